"""The standards dynasoar speaks on the wire: SOAP envelopes, WS-Addressing, MTOM/XOP, faults."""
