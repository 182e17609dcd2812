"""Hosting spyne service definitions behind dynasoar's own HTTP, WS-Addressing and MTOM layers.

spyne parses the Body and calls the method; everything around it (transport, addressing,
attachments, faults) is ours, because spyne's versions of those break on Python 3 or with
other stacks (see CONTRACT.md)."""
