"""Consumers that keep calling: threads each holding a keep-alive HTTP session (as most SOAP
stacks do, through requests/urllib3) and calling Echo or Counter through the SP in a loop,
recording every call: when, how long, and what came back."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

import requests
from lxml import etree

from .wire import ECHO_ACTION, ECHO_NS, echo_body, envelope

COUNTER_NS = "urn:dynasoar:samples:counter"
COUNTER_BODY = f'<c:Increment xmlns:c="{COUNTER_NS}"/>'


@dataclass
class Outcome:
    service: str
    started: float
    seconds: float
    status: int  # 0: no HTTP answer at all
    value: str | None = None  # the answer (Echo's text, Counter's count)
    fault: str | None = None  # what went wrong, when it did
    sent: str = ""
    version: str | None = None  # the X-Dynasoar-Version of the reply
    host: str | None = None  # the X-Dynasoar-Host of the reply

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.fault is None


@dataclass
class Load:
    """``echo`` + ``counter`` callers against ``sp`` until :meth:`stop`; ``since`` marks a
    moment, so that :meth:`after` gives the calls started after it."""

    sp: str
    echo: int = 12
    counter: int = 4
    timeout: float = 60.0
    #: the counter service's name (VmCounter: the same contract in a VM guest)
    counter_name: str = "Counter"
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Load:
        for i in range(self.echo + self.counter):
            service = "Echo" if i < self.echo else self.counter_name
            thread = threading.Thread(target=self._caller, args=(service,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 10)
        return self.outcomes

    def count(self) -> int:
        with self._lock:
            return len(self.outcomes)

    def after(self, moment: float) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if o.started >= moment]

    def _caller(self, service: str) -> None:
        session = requests.Session()
        session.trust_env = False
        url = f"{self.sp}/services/{service}"
        while not self._stop.is_set():
            text = uuid.uuid4().hex
            body = echo_body(text) if service == "Echo" else COUNTER_BODY
            action = ECHO_ACTION if service == "Echo" else f"{COUNTER_NS}/Increment"
            started = time.monotonic()
            outcome = Outcome(service, started, 0.0, 0, sent=text)
            try:
                reply = session.post(
                    url,
                    data=envelope(body),
                    headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": action},
                    timeout=self.timeout,
                )
                outcome.status = reply.status_code
                outcome.version = reply.headers.get("X-Dynasoar-Version")
                outcome.host = reply.headers.get("X-Dynasoar-Host")
                outcome.value, outcome.fault = _read(reply.content, service)
                if service == "Echo" and outcome.fault is None and outcome.value != text:
                    outcome.fault = f"wrong answer {outcome.value!r} to {text!r}"
            except requests.RequestException as exc:
                outcome.fault = f"{type(exc).__name__}: {exc}"
            outcome.seconds = time.monotonic() - started
            with self._lock:
                self.outcomes.append(outcome)
        session.close()


def _read(body: bytes, service: str) -> tuple[str | None, str | None]:
    try:
        root = etree.fromstring(body)
    except etree.XMLSyntaxError:
        return None, f"not XML: {body[:200]!r}"
    fault = root.find(".//{*}Fault")
    if fault is not None:
        return None, " | ".join(t.strip() for t in fault.itertext() if t.strip())[:500]
    tag = f"{{{ECHO_NS}}}text" if service == "Echo" else f"{{{COUNTER_NS}}}value"
    found = root.find(f".//{tag}")
    if found is None:
        return None, f"no {tag} in {body[:200]!r}"
    return found.text, None


def summary(outcomes: list[Outcome]) -> str:
    failed = [o for o in outcomes if not o.ok]
    longest = max((o.seconds for o in outcomes), default=0.0)
    lines = [f"{len(outcomes)} calls, {len(failed)} failed, longest {longest:.2f} s"]
    lines += [f"  {o.service} at {o.started:.2f}: {o.status} {o.fault}" for o in failed[:20]]
    return "\n".join(lines)
