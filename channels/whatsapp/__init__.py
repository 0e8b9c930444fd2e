"""WhatsApp, through Twilio.

- channel.py: `WhatsAppChannel`, sending replies with the twilio SDK, and the 24-hour customer-service window
- routes.py: the webhooks Twilio calls (messages, delivery reports), built from channels/webhook.py's steps
- inbound.py: what Twilio posts, verified and read into the core's terms
- render.py: a reply as the Twilio Messages it becomes (bodies, numbered choices, templates)
- media.py: signed public links to local files, which Twilio fetches to send a document
"""

from channels.whatsapp.channel import WhatsAppChannel

__all__ = ["WhatsAppChannel"]
