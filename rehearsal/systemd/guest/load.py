# A steady load on a predictor's three ports while its unit restarts, for the rollover checks of
# guest.py: callers that open a connection per request, callers that keep theirs (reconnecting only
# when an answer says `Connection: close`, as http.client does), a gRPC caller on one channel and a
# Prometheus-like scraper. None retries: every failure is counted, with what failed.
import http.client
import json
import threading
import time

import grpc


def _varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _strings(message, field):
    """The values of string field `field` of a protobuf message (wire types 0 and 2 only)."""
    values, at = [], 0
    while at < len(message):
        key, at = _read_varint(message, at)
        if key & 7 == 0:
            _, at = _read_varint(message, at)
        elif key & 7 == 2:
            length, at = _read_varint(message, at)
            if key >> 3 == field:
                values.append(message[at:at + length].decode())
            at += length
        else:
            raise ValueError(f"wire type {key & 7}")
    return values


def _read_varint(data, at):
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


class Load:
    """Callers of `model` on `ports` (http, grpc, metrics) until stop(); `infer` is a v2 request body."""

    def __init__(self, model, ports, infer):
        self.model, self.ports, self.infer = model, ports, json.dumps(infer).encode()
        self.lock = threading.Lock()
        self.answered, self.failures, self.versions = 0, [], set()
        self.stopping = threading.Event()
        callers = [self._per_request, self._per_request, self._kept_alive, self._kept_alive,
                   self._grpc, self._scraper]
        self.threads = [threading.Thread(target=self._loop, args=(c, i), daemon=True)
                        for i, c in enumerate(callers)]

    def start(self):
        for thread in self.threads:
            thread.start()
        return self

    def stop(self):
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=120)

    def _note(self, version=None, failure=None):
        with self.lock:
            if failure:
                self.failures.append(failure)
            else:
                self.answered += 1
                if version:
                    self.versions.add(version)

    def _loop(self, caller, number):
        caller(f"caller {number} ({caller.__name__.strip('_')})")

    def _post(self, connection):
        connection.request("POST", f"/v2/models/{self.model}/infer", self.infer,
                           {"content-type": "application/json"})
        answer = connection.getresponse()
        body = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"{answer.status} {body[:200]!r}")
        return json.loads(body)["model_version"]

    def _per_request(self, name):
        while not self.stopping.is_set():
            connection = http.client.HTTPConnection("127.0.0.1", self.ports["http"], timeout=60)
            try:
                self._note(version=self._post(connection))
            except Exception as error:
                self._note(failure=f"{name}: {error!r}")
            finally:
                connection.close()

    def _kept_alive(self, name):
        # http.client reopens the connection for the next request once an answer said
        # `Connection: close` (or the server closed it between requests, which is the race the
        # drain must not cause).
        connection = http.client.HTTPConnection("127.0.0.1", self.ports["http"], timeout=60)
        while not self.stopping.is_set():
            try:
                self._note(version=self._post(connection))
            except Exception as error:
                self._note(failure=f"{name}: {error!r}")
                connection.close()
        connection.close()

    def _grpc(self, name):
        channel = grpc.insecure_channel(f"127.0.0.1:{self.ports['grpc']}")
        metadata = channel.unary_unary("/inference.GRPCInferenceService/ModelMetadata",
                                       request_serializer=None, response_deserializer=None)
        request = b"\x0a" + _varint(len(self.model)) + self.model.encode()
        while not self.stopping.is_set():
            try:
                answer = metadata(request, timeout=60)
                self._note(version=_strings(answer, 2)[0])
            except Exception as error:
                self._note(failure=f"{name}: {error!r}")
            time.sleep(0.01)
        channel.close()

    def _scraper(self, name):
        while not self.stopping.is_set():
            connection = http.client.HTTPConnection("127.0.0.1", self.ports["metrics"], timeout=60)
            try:
                connection.request("GET", "/metrics")
                answer = connection.getresponse()
                body = answer.read()
                if answer.status != 200 or not body.endswith(b"# EOF\n"):
                    raise RuntimeError(f"{answer.status} {body[:200]!r}")
                self._note()
            except Exception as error:
                self._note(failure=f"{name}: {error!r}")
            finally:
                connection.close()
            time.sleep(0.05)
