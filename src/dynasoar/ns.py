"""Every namespace URI dynasoar speaks, in one place."""

from __future__ import annotations

SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"

WSA = "http://www.w3.org/2005/08/addressing"
#: The 2004/08 member submission, as sent by WSE / early WCF clients; accepted on input.
WSA_2004 = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
WSAW = "http://www.w3.org/2006/05/addressing/wsdl"
WSAM = "http://www.w3.org/2007/05/addressing/metadata"

XOP = "http://www.w3.org/2004/08/xop/include"
XMIME = "http://www.w3.org/2005/05/xmlmime"

WSDL = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP11 = "http://schemas.xmlsoap.org/wsdl/soap/"
WSDL_SOAP12 = "http://schemas.xmlsoap.org/wsdl/soap12/"
XSD = "http://www.w3.org/2001/XMLSchema"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XML = "http://www.w3.org/XML/1998/namespace"

#: Shared types, SOAP headers (PreferredHosts) and fault subcodes.
DYN = "urn:dynasoar:2006"
#: The Service Provider's management port.
DYN_SP = "urn:dynasoar:2006:provider"
#: The Host Provider's port.
DYN_HP = "urn:dynasoar:2006:host"

#: WS-Addressing well-known values.
WSA_ANONYMOUS = WSA + "/anonymous"
WSA_NONE = WSA + "/none"
WSA_FAULT_ACTION = WSA + "/fault"
WSA_SOAP_FAULT_ACTION = WSA + "/soap/fault"
WSA_2004_ANONYMOUS = WSA_2004 + "/role/anonymous"
WSA_2004_FAULT_ACTION = WSA_2004 + "/fault"
