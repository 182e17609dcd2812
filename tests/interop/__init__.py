"""Interop suite: clients of other SOAP stacks, generated from the WSDLs a real SP serves."""
