// dynasoar interop peer: the npm `soap` package (node-soap), its clients built at run time from
// the WSDLs the Service Provider serves. Driven by tests/interop/test_node.py.
//
// Usage: node client.js '{"sp": URL, "service": NAME, "broken": NAME, "version": "1.1"|"1.2",
//                         "package": PATH (optional, published with MTOM)}'
// Runs the interop scenario and prints one JSON object, one key per step.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const soap = require('soap');

const WSA = 'http://www.w3.org/2005/08/addressing';
const XOP = 'http://www.w3.org/2004/08/xop/include';

const spec = JSON.parse(process.argv[2]);
const soap12 = spec.version === '1.2';
const suffix = soap12 ? 'Soap12' : 'Soap11';

// WS-Addressing through node-soap's own header hook: a function called for every message with
// the operation's SOAPAction and the endpoint, so each request gets a fresh MessageID.
let sentMessageId = null;
function addressing(methodName, location, soapAction) {
  sentMessageId = 'urn:uuid:' + crypto.randomUUID();
  return (
    `<wsa:Action xmlns:wsa="${WSA}">${soapAction}</wsa:Action>` +
    `<wsa:MessageID xmlns:wsa="${WSA}">${sentMessageId}</wsa:MessageID>` +
    `<wsa:To xmlns:wsa="${WSA}">${location}</wsa:To>`
  );
}

function text(value) {
  // node-soap gives simple content as a string, or {$value, attributes} when it has attributes.
  if (value === undefined || value === null) return null;
  if (typeof value === 'object') return value.$value !== undefined ? String(value.$value) : JSON.stringify(value);
  return String(value);
}

function readFault(err) {
  const out = { fault: false };
  const fault = err && err.root && err.root.Envelope && err.root.Envelope.Body && err.root.Envelope.Body.Fault;
  if (!fault) return Object.assign(out, { error: String(err && err.message) });
  out.fault = true;
  if (fault.Code) {
    out.code = text(fault.Code.Value);
    if (fault.Code.Subcode) out.subcode = text(fault.Code.Subcode.Value);
    out.reason = fault.Reason ? text(fault.Reason.Text) : null;
    out.detail = fault.Detail ? JSON.stringify(fault.Detail) : null;
  } else {
    out.code = text(fault.faultcode);
    out.reason = text(fault.faultstring);
    out.detail = fault.detail ? JSON.stringify(fault.detail) : null;
  }
  // The fault's own bytes, so the test can resolve QName prefixes against their declarations.
  out.body = typeof err.body === 'string' ? err.body : null;
  return out;
}

function call(client, port, operation, args, options) {
  return new Promise((resolve) => {
    sentMessageId = null;
    const method = client[port.service][port.name][operation];
    method(args, (err, result, rawResponse, soapHeader) => {
      // The SOAP version of the envelope node-soap actually sent, from its namespace.
      const sentXml = String(client.lastRequest || '');
      const step = { ok: !err, version: sentXml.includes('http://www.w3.org/2003/05/soap-envelope') ? '1.2' : '1.1' };
      if (sentMessageId) step.message_id = sentMessageId;
      const sent = client.lastRequestHeaders || {};
      for (const [name, value] of Object.entries(sent)) {
        const key = name.toLowerCase();
        if (key === 'content-type') step.sent_content_type = String(value);
        if (key === 'soapaction') step.sent_soapaction = String(value);
      }
      const got = client.lastResponseHeaders || {};
      if (got['x-dynasoar-cold'] !== undefined) step.cold = String(got['x-dynasoar-cold']);
      if (got['x-dynasoar-deployment'] !== undefined) step.deployment = String(got['x-dynasoar-deployment']);
      let header = soapHeader;
      if (err && err.root && err.root.Envelope) header = err.root.Envelope.Header;
      if (header) {
        if (header.RelatesTo !== undefined) step.relates_to = text(header.RelatesTo);
        if (header.Action !== undefined) step.reply_action = text(header.Action);
      }
      if (err) Object.assign(step, readFault(err));
      else step.result = result;
      resolve(step);
    }, options || {});
  });
}

async function main() {
  const out = {};
  const options = { forceSoap12Headers: soap12 };
  const serviceUrl = `${spec.sp}/services/${spec.service}`;
  const echo = await soap.createClientAsync(serviceUrl + '?wsdl', options);
  const echoPort = { service: 'EchoService', name: 'Echo' + suffix };
  out.ports = Object.keys(echo.describe().EchoService);

  echo.addSoapHeader(addressing);
  out.cold = await call(echo, echoPort, 'Echo', { text: 'cold from node soap' });
  out.warm = await call(echo, echoPort, 'Echo', { text: 'warm from node soap' });
  out.service_fault = await call(echo, echoPort, 'Compute', { millis: -1 });
  echo.setEndpoint(`${spec.sp}/services/${spec.broken}`);
  out.provider_fault = await call(echo, echoPort, 'Echo', { text: 'to a broken package' });
  echo.setEndpoint(serviceUrl);
  echo.clearSoapHeaders();
  out.plain = await call(echo, echoPort, 'Echo', { text: 'plain node soap' });

  const provider = await soap.createClientAsync(`${spec.sp}/dynasoar/ServiceProvider?wsdl`, options);
  const providerPort = { service: 'ServiceProvider', name: 'ServiceProvider' + suffix };
  provider.addSoapHeader(addressing);
  const listed = await call(provider, providerPort, 'ListServices', {});
  const services = listed.result && listed.result.service ? [].concat(listed.result.service) : [];
  listed.services = services.map((s) => s.name).join(',');
  delete listed.result;
  out.list_services = listed;

  if (spec.package) {
    // node-soap sends MTOM itself (multipart/related, application/xop+xml root) when given
    // attachments; the xop:Include that points at the attachment goes in the body as raw XML.
    const body = fs.readFileSync(spec.package);
    const attachment = {
      mimetype: 'application/octet-stream',
      contentId: 'package@dynasoar',
      name: 'package.tar.gz',
      body,
    };
    const args = { package: { $xml: `<xop:Include xmlns:xop="${XOP}" href="cid:package@dynasoar"/>` } };
    const published = await call(provider, providerPort, 'Publish', args, { attachments: [attachment] });
    if (published.result && published.result.service) {
      published.name = published.result.service.name;
      published.sha256 = published.result.service.sha256;
    }
    delete published.result;
    out.mtom_publish = published;
    if (published.ok) {
      const url = `${spec.sp}/services/${published.name}`;
      const mine = await soap.createClientAsync(url + '?wsdl', options);
      mine.addSoapHeader(addressing);
      out.mtom_call = await call(mine, echoPort, 'Echo', { text: 'published by node soap' });
    }
  }
  for (const step of Object.values(out)) {
    if (step && step.result && typeof step.result.text === 'string') {
      step.text = step.result.text;
      delete step.result;
    }
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + '\n');
  process.exit(1);
});
