"""Slack, through slack-bolt and slack-sdk, for one workspace or many.

- channel.py: `SlackChannel`, sending replies (Block Kit, files) with the right workspace's token
- routes.py: the Request URL (`POST /slack/events`, built from channels/webhook.py's steps, then Bolt's listeners)
  and the install flow
- inbound.py: what Slack sends, read into the core's terms
- blocks.py: a reply as Block Kit messages
- installations.py: installations and OAuth states in our database; store.py: slack-sdk's store interfaces over them
- manifest.yml: the app's manifest, to create it at api.slack.com
"""

from channels.slack.channel import SlackChannel

__all__ = ["SlackChannel"]
