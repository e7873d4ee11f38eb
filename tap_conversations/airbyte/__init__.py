"""The tap as an Airbyte source: a thin adapter over `TapConversations` and its streams.

Needs the `airbyte` extra (`pip install 'tap-conversations[airbyte]'`); run `source-conversations`.
"""
