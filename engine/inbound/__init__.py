"""Hearing back (SPEC §8): replies, bounces, auto-replies and unsubscribes from IMAP.

`classify` says what a message is (pure), `imap` reads one mailbox read-only, `poll`
matches messages to enrolments and acts on each once, through the store contract
(`engine.store.Repository`) and the engine's own rules (`engine.signals`,
`engine.enrolments`), and `pause` says how long an auto-reply pauses a contact.
"""
