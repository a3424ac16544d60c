"""Hearing back (SPEC §8): replies, bounces, auto-replies and unsubscribes from IMAP.

`classify` says what a message is (pure), `imap` reads one mailbox read-only, `poll`
matches messages to enrolments and records them once, `pause` is the auto-reply pause
rule, and `store` is the one protocol this package needs from the state store.
"""
