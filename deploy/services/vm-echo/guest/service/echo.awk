# echo.awk: the Echo and Compute operations of urn:dynasoar:samples:echo for busybox awk.
# Reads one SOAP 1.1 or 1.2 envelope; writes the reply envelope to the file `out` and prints
# "HTTP-STATUS<TAB>CONTENT-TYPE". Not a full XML parser: it finds elements by local name with
# regular expressions, which is enough for this wire contract (text content is copied as it
# arrived, so entities stay escaped and the reply stays well-formed).
# The contract is the code sample's (deploy/services/echo/echo_service.py): Compute(millis)
# burns millis ms of this process's CPU time, at most MAX_MILLIS, and returns the iterations;
# a millis that is not an integer, or out of range, is a Sender fault with the same codes.

BEGIN {
    RS = "\001"  # no such byte in the envelope: the whole body is one record
    ENV11 = "http://schemas.xmlsoap.org/soap/envelope/"
    ENV12 = "http://www.w3.org/2003/05/soap-envelope"
    WSA10 = "http://www.w3.org/2005/08/addressing"
    WSA04 = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
    TNS = "urn:dynasoar:samples:echo"
    MAX_MILLIS = 60000  # Compute's per-call limit, as in the code sample
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
    if ((operation != "Echo" && operation != "Compute") || !index(doc, TNS)) {
        fault("Sender", "", "this service implements only {" TNS "}Echo and {" TNS "}Compute, " \
            "not " operation)
    }
    if (action != "" && action != TNS "/" operation) {
        fault("Sender", "wsa:ActionNotSupported", "the action " action " is not supported here")
    }
    body = substr(body, RSTART + RLENGTH)
    if (operation == "Compute") compute(body)
    else echo(body)
}

function echo(body,    text) {
    text = element_text(body, "text", "Echo", "")
    if (text == "\001") fault("Sender", "", "Echo needs a text element")
    respond(200, TNS "/EchoResponse", \
        "<tns:EchoResponse xmlns:tns=\"" TNS "\"><tns:text>" text "</tns:text></tns:EchoResponse>")
}

function compute(body,    millis, iterations) {
    millis = element_text(body, "millis", "Compute", "ValidationError")
    if (millis == "\001") fault("Sender", "ValidationError", "Compute needs a millis element")
    gsub(/^[ \t\r\n]+|[ \t\r\n]+$/, "", millis)  # xs:int collapses white space
    if (millis !~ /^[-+]?[0-9]+$/) {
        fault("Sender", "ValidationError", "Could not cast '" millis "' to integer")
    }
    if (millis + 0 < 0 || millis + 0 > MAX_MILLIS) {
        fault("Sender", "InvalidArgument", \
            "millis must be between 0 and " MAX_MILLIS ", got " millis)
    }
    iterations = sprintf("%d", burn(millis + 0))
    respond(200, TNS "/ComputeResponse", "<tns:ComputeResponse xmlns:tns=\"" TNS "\">" \
        "<tns:iterations>" iterations "</tns:iterations></tns:ComputeResponse>")
}

# The text of the first element named `local` (any prefix) in `s` as it arrived; "" when it is
# empty (<x/>), "\001" when there is none.
function element_text(s, local, operation, subcode,    rest) {
    if (match(s, "<" PREFIX local "(" WS "[^>]*)?/>")) return ""
    if (!match(s, "<" PREFIX local "(" WS "[^>]*)?>")) return "\001"
    rest = substr(s, RSTART + RLENGTH)
    if (!match(rest, "</" PREFIX local WS "*>")) {
        fault("Sender", subcode, operation "'s " local " is not closed")
    }
    return substr(rest, 1, RSTART - 1)
}

# Spin until this process has used `millis` ms of CPU time; the iterations done. CPU time, not
# wall time: a guest busy with something else makes the call slower, not cheaper.
function burn(millis,    start, limit, iterations) {
    limit = millis * 1000000
    start = cpu_ns()
    iterations = 0
    while (cpu_ns() - start < limit) iterations++
    return iterations
}

# This process's CPU time in ns: the first field of /proc/self/schedstat. That field is brought
# up to date only at a scheduler tick (4 ms here) or a context switch; reading /proc/self/stat
# first makes the kernel bring it up to date now (thread_group_cputime -> task_sched_runtime), so
# the clock has the resolution of a read, not of a tick. busybox awk has no clock of its own.
function cpu_ns(    line, field) {
    getline line < "/proc/self/stat"
    close("/proc/self/stat")
    if ((getline line < "/proc/self/schedstat") <= 0) {
        fault("Receiver", "", "the guest's kernel has no /proc/self/schedstat: no CPU clock")
    }
    close("/proc/self/schedstat")
    split(line, field, " ")
    return field[1] + 0
}

# The trimmed text of the first element named `local` (any prefix) in `s`.
function text_of(s, local,    t) {
    if (!match(s, "<" PREFIX local "(" WS "[^>]*)?>[^<]*<")) return ""
    t = substr(s, RSTART, RLENGTH - 1)
    sub(/^<[^>]*>/, "", t)
    gsub(/^[ \t\r\n]+|[ \t\r\n]+$/, "", t)
    return t
}

# `subcode` is a QName as it goes on the wire: "wsa:..." for WS-Addressing's, unprefixed for
# the service's own (InvalidArgument, ValidationError), as the code sample writes them.
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
        else if (subcode != "") value = value "." subcode
        payload = "<env:Fault><faultcode>" value "</faultcode><faultstring>" reason \
            "</faultstring></env:Fault>"
    }
    if (wsa == "") wsa = WSA10  # only binds the prefix the fault code may use
    respond(soap12 && code == "Sender" ? 400 : 500, wsa "/fault", payload)
}

function respond(status, reply_action, payload,    env, head, ctype) {
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
    printf "%s %s\t%s", status, (status == 200 ? "OK" : (status == 400 ? "Bad Request" : \
        "Internal Server Error")), ctype
    exit 0
}
