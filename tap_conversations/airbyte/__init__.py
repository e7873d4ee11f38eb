"""The tap as an Airbyte source: a thin adapter over `TapConversations` and its streams.

Installed with the tap (the protocol models are a plain dependency); run `source-conversations`.
"""
