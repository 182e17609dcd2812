# counter.awk: the Increment operation of urn:dynasoar:samples:counter for busybox awk. Reads
# one SOAP 1.1 or 1.2 envelope; writes the reply envelope to the file `out`, with @VALUE@ where
# the new count goes, and prints "HTTP-STATUS<TAB>CONTENT-TYPE<TAB>increment" (a fault: without
# the last field, and nothing is counted). Not a full XML parser: it finds elements by local
# name with regular expressions, enough for this wire contract (as vm-echo's echo.awk).

BEGIN {
    RS = "\001"  # no such byte in the envelope: the whole body is one record
    ENV11 = "http://schemas.xmlsoap.org/soap/envelope/"
    ENV12 = "http://www.w3.org/2003/05/soap-envelope"
    WSA10 = "http://www.w3.org/2005/08/addressing"
    WSA04 = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
    TNS = "urn:dynasoar:samples:counter"
    NAME = "[A-Za-z_][-A-Za-z0-9_.]*"
    PREFIX = "(" NAME ":)?"
    WS = "[ \t\r\n]"
}

{ doc = doc (NR > 1 ? RS : "") $0 }

END {
    soap12 = index(doc, ENV12) > 0 || content_type ~ /^application\/soap\+xml/
    if (!soap12 && !index(doc, ENV11)) fault("Sender", "", "not a SOAP 1.1 or 1.2 envelope")
    wsa = index(doc, WSA10) ? WSA10 : (index(doc, WSA04) ? WSA04 : "")
    if (!match(doc, "<" PREFIX "Body(" WS "[^>]*)?>")) fault("Sender", "", "no SOAP Body")
    header = substr(doc, 1, RSTART - 1)
    body = substr(doc, RSTART + RLENGTH)
    if (wsa != "") {
        relates = text_of(header, "MessageID")
        action = text_of(header, "Action")
    }
    if (!match(body, "<" NAME "(:" NAME ")?")) fault("Sender", "", "the SOAP Body is empty")
    operation = substr(body, RSTART + 1, RLENGTH - 1)
    sub(/^.*:/, "", operation)
    if (operation != "Increment" || !index(doc, TNS)) {
        fault("Sender", "", "this service implements only {" TNS "}Increment, not " operation)
    }
    if (action != "" && action != TNS "/Increment") {
        fault("Sender", "wsa:ActionNotSupported", "the action " action " is not supported here")
    }
    respond(200, TNS "/IncrementResponse", "<tns:IncrementResponse xmlns:tns=\"" TNS "\">" \
        "<tns:value>@VALUE@</tns:value></tns:IncrementResponse>", "\tincrement")
}

# The trimmed text of the first element named `local` (any prefix) in `s`.
function text_of(s, local,    t) {
    if (!match(s, "<" PREFIX local "(" WS "[^>]*)?>[^<]*<")) return ""
    t = substr(s, RSTART, RLENGTH - 1)
    sub(/^<[^>]*>/, "", t)
    gsub(/^[ \t\r\n]+|[ \t\r\n]+$/, "", t)
    return t
}

function fault(code, subcode, reason,    payload, value) {
    gsub(/&/, "\\&amp;", reason); gsub(/</, "\\&lt;", reason)
    if (soap12) {
        payload = "<env:Fault><env:Code><env:Value>env:" code "</env:Value>"
        if (subcode != "") {
            payload = payload "<env:Subcode><env:Value>" subcode "</env:Value></env:Subcode>"
        }
        payload = payload "</env:Code><env:Reason><env:Text xml:lang=\"en\">" reason \
            "</env:Text></env:Reason></env:Fault>"
    } else {
        value = code == "Sender" ? "env:Client" : "env:Server"
        if (subcode ~ /^wsa:/) value = subcode
        payload = "<env:Fault><faultcode>" value "</faultcode><faultstring>" reason \
            "</faultstring></env:Fault>"
    }
    if (wsa == "") wsa = WSA10  # only binds the prefix the fault code may use
    respond(soap12 && code == "Sender" ? 400 : 500, wsa "/fault", payload, "")
}

function respond(status, reply_action, payload, flag,    env, head, ctype) {
    env = soap12 ? ENV12 : ENV11
    head = ""
    if (relates != "" || action != "") {
        head = "<env:Header><wsa:Action>" reply_action "</wsa:Action><wsa:MessageID>" message_id \
            "</wsa:MessageID>"
        if (relates != "") head = head "<wsa:RelatesTo>" relates "</wsa:RelatesTo>"
        head = head "</env:Header>"
    }
    printf "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<env:Envelope xmlns:env=\"%s\"%s>%s<env:Body>%s</env:Body></env:Envelope>\n", \
        env, (wsa != "" ? " xmlns:wsa=\"" wsa "\"" : ""), head, payload > out
    close(out)
    if (soap12) ctype = "application/soap+xml; charset=utf-8; action=\"" reply_action "\""
    else ctype = "text/xml; charset=utf-8"
    printf "%s %s\t%s%s", status, (status == 200 ? "OK" : (status == 400 ? "Bad Request" : \
        "Internal Server Error")), ctype, flag
    exit 0
}
