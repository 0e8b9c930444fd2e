"""Local HTTP stand-ins of the outside platforms (the Telegram Bot API, Twilio, the Slack Web API, an OpenAI-compatible
server), which the real SDKs talk to through their base URL: used by the tests and by the benches alike."""
