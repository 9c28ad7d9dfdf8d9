"""Honest load: a grpcio client calling through the proxy in the background (during an attack or a
fault) whose every answer is checked."""

import json
import os
import threading
import time

from .channels import describe
from .env import TIME_SCALE


class HonestClient:
    """An honest grpcio client calling in a background thread for as long as it runs: Unary with a
    unique payload (checked), and every `stream_every`-th call a ServerStream whose messages are
    each checked. Each call has a `deadline` (s). Failures and wrong answers are recorded with the
    time they happened; assert_clean() raises AssertionError naming them."""

    def __init__(self, channel, name="honest", stream_every=4, deadline=10.0, pause=0.0):
        self.channel = channel
        self.name = name
        self.stream_every = stream_every
        self.deadline = deadline * TIME_SCALE
        self.pause = pause
        self.ok = 0
        self.failures = []
        self.max_latency = 0.0  # s, the slowest successful call
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.t0 = None

    def start(self):
        # The first call must work before the attack starts: the channel is up.
        reply = self.channel.unary_unary("/demo.Echo/Unary")(b"warm-up", timeout=self.deadline)
        if reply != b"warm-up":
            raise AssertionError(f"{self.name}: warm-up call answered {reply!r}")
        self.t0 = time.monotonic()
        self.thread.start()
        return self

    def _fail(self, what):
        with self.lock:
            self.failures.append(f"{time.monotonic() - self.t0:.2f} s: {what}")

    def _run(self):
        import grpc
        from grpc_origin import server_stream_message

        unary = self.channel.unary_unary("/demo.Echo/Unary")
        stream = self.channel.unary_stream("/demo.Echo/ServerStream")
        n = 0
        while not self.stopping.is_set():
            n += 1
            started = time.monotonic()
            try:
                if self.stream_every and n % self.stream_every == 0:
                    count, size = 8, 1000 + n % 7
                    got = list(stream(json.dumps({"count": count, "size": size}).encode(), timeout=self.deadline))
                    if len(got) != count or any(m != server_stream_message(i, size) for i, m in enumerate(got)):
                        self._fail(f"ServerStream #{n}: {len(got)} messages, not the {count} expected")
                        continue
                else:
                    payload = b"%s-%d-" % (self.name.encode(), n) + os.urandom(8).hex().encode()
                    reply = unary(payload, timeout=self.deadline)
                    if reply != payload:
                        self._fail(f"Unary #{n}: wrong reply {reply[:40]!r}")
                        continue
            except grpc.RpcError as e:
                self._fail(f"call #{n}: {describe(e)}")
                continue
            with self.lock:
                self.ok += 1
                self.max_latency = max(self.max_latency, time.monotonic() - started)
            if self.pause:
                self.stopping.wait(self.pause)

    def stop(self):
        self.stopping.set()
        self.thread.join(self.deadline + 5)
        if self.thread.is_alive():
            self._fail("a call was still running long after its deadline")
        return self

    def assert_clean(self, min_calls=5):
        """Stops the client; AssertionError when any call failed or too few got through."""
        self.stop()
        if self.failures:
            raise AssertionError(f"{self.name} client: {len(self.failures)} of {self.ok + len(self.failures)} calls "
                                 f"failed: {self.failures[:5]}")
        if self.ok < min_calls:
            raise AssertionError(f"{self.name} client: only {self.ok} calls went through")
