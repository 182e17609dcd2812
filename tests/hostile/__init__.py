"""The hostile-input corpus: what an attacker can send to each port of a running platform.

One Service Provider and one Host Provider run as real processes for the whole module
(``conftest.py``), signed as ``make demo`` runs them: each has a key pair, the SP trusts the
HP's certificate and the HP the SP's. The echo sample is published and deployed once. Every
case in ``cases.py`` then goes to one of three ports:

- ``sp-service``: the routing interceptor, ``POST /services/Echo`` (and other paths under it);
- ``sp-management``: the SP's management port, ``POST /dynasoar/ServiceProvider``;
- ``hp``: the HP's port, ``POST /dynasoar/HostProvider``, which acts only on messages signed
  by the SP. Cases aimed at parsing defenses are signed when the defense sits behind the
  signature check (a package's unpacking); the ones in front of it (XML, MIME, size limits,
  mustUnderstand) are expected to fail there, before any signature is looked at.

A case is a message (headers and body, sent with http.client) or a raw socket script (for
HTTP-level abuse http.client would refuse to send: lying lengths, smuggling, broken chunking,
oversized or trickled heads). Each case asserts, in ``test_corpus.py``:

1. the exact answer: the fault code list (``Reply.fault_codes()``: SOAP 1.2 Code and every
   Subcode; SOAP 1.1 faultcode and dynasoar's detail element) and the HTTP status, or the HTTP
   status of a refusal made before any SOAP processing; no traceback, no file content, no
   server path in the body;
2. that both servers keep serving: ``/healthz`` on both and a real Echo call relayed through
   the SP to the deployment;
3. that nothing changed: the SP's registry (ListServices / ListDeployments / ListHosts on its
   management port), its data directory (every file's name, size and SHA-256: repository,
   image store, spool), the HP's own account (Status and List, asked with a signed client)
   and its data directory (image cache, spool, deployments);
4. that memory stays flat: VmRSS of both processes right after the answer(s) (what a case
   leaves behind, leaked or waiting for a collection) and against a baseline taken after a
   warm-up (every heavy case once); a case sending megabytes runs several times.

``test_fuzz.py`` is the property-based half: hypothesis drives the envelope, WS-Addressing and
MTOM parsers in-process with arbitrary and mutated input, which must parse or raise a
DynasoarError, never anything else, never hang, and never leave a spooled file behind.

The corpus found and fixed (each case's ``note`` names its fix), in ``src/dynasoar``:

- ``soap/envelope.py``: libxml2 opened the local file an external DTD subset or parameter
  entity names, despite ``load_dtd=False`` and ``no_network=True``; ``file:///dev/zero`` hung
  the SP's event loop (or the HP's, unauthenticated) for good. The parsers now resolve every
  external resource to nothing. The pull parser let namespace errors through (``<:a>``, an
  undeclared prefix): a ValueError, a 500 "internal error", or a malformed head relayed on.
- ``host/container.py`` (+ ``wsdl.py``, ``soap/envelope.py``): a mandatory header block a
  deployed code service does not process was silently ignored; now env:MustUnderstand,
  understanding WS-A, dyn:, wsse:Security (the SP's) and the headers its WSDL declares.
- ``package.py``: a zip or tar bomb was written out to a GiB (5 s) before being refused, a gzip
  stream padded past its tar's end cost seconds of CPU, a zip of 10,001 files was unpacked to
  10,000 first; all are refused up front now.
- ``http/request_parser.py``: a request whose Transfer-Encoding does not end in chunked was
  dispatched and answered with a dyn:TransportError fault; now 400 (501 for gzip, chunked).
- ``service/spyne_port.py``, ``soap/mtom.py``: a big message's bytes and trees stayed in
  memory (reference cycles) until a full collection, tens of MiB per few messages.
- ``service/endpoint.py``: a refused SOAP 1.2 MTOM message got a SOAP 1.1 fault.
"""
