"""Sample domains the guides build on, shipped so that every guide runs as written.

`sekiban.examples.bank` is the bank domain of Getting started. It uses the core only
(no extra), and nothing in sekiban imports it.
"""
