"""The consumer side: clients of the SP's management port (zeep), MTOM publishing, and
``dynasoar call`` for any advertised service."""
