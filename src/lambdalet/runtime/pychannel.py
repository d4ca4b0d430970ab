"""init's end of the invocation channel to a Python runtime it forked (runtime/pyfork.py).

Why: over the Runtime API an invocation costs the environment two HTTP round trips on loopback (the
event as the answer to GET /next, the result as POST /response, whose 202 the runtime waits for
before its next GET) and a thread hop in init (relay thread -> the connection's thread). Our own
bootstrap is forked by init, so init hands it a socket instead: the event is one frame, the result one
frame, and a result means "next". One thread of init does the whole invocation: it reads the host's
INVOKE from the bridge, writes the event to the runtime, reads the result and sends it on.

What the runtime sees is the same: python_bootstrap's `_Channel` answers main()'s calls as the HTTP
API does (same headers, same 202). The Runtime API on AWS_LAMBDA_RUNTIME_API stays up for everything
else, and every other runtime (`provided`, awslambdaric, Node, another Python) uses it unchanged.

The runtime is the tenant's: its frames are bounded like its HTTP requests (header 64 KiB; a body over
the response limit is read and dropped, never buffered) and one it cannot have meant closes the channel.
"""
from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct

from lambdalet.runtime import bridge

# Frame kinds, as python_bootstrap spells them (it imports nothing of lambdalet): runtime -> init
NEXT, RESPONSE, ERROR, INIT_ERROR = 1, 3, 4, 5
EVENT = 2                               # init -> runtime
_HDR = struct.Struct(">BII")
MAX_HEADER = 64 * 1024
_SIGKILL_BIT = 1 << (signal.SIGKILL - 1)
_PF_EXITING = 0x4                       # include/linux/sched.h: the task is exiting
_HANGUP = select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0x2000)


def pair() -> tuple[socket.socket, socket.socket]:
    """(init's end, the runtime's end); the runtime's end is closed in init once the runtime has it."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


class _Frames:
    """Incremental reader of the runtime's frames; a body over `limit` is dropped as it arrives and
    its frame comes out with body None."""

    def __init__(self, limit: int):
        self.limit, self.buf = limit, bytearray()
        self.drop, self.dropped = 0, (0, b"", None)

    def feed(self, data: bytes) -> list[tuple[int, bytes, bytes | None]]:
        buf, out = self.buf, []
        buf += data
        while True:
            if self.drop:
                n = min(self.drop, len(buf))
                del buf[:n]
                self.drop -= n
                if self.drop:
                    return out
                out.append(self.dropped)
            if len(buf) < _HDR.size:
                return out
            kind, hlen, blen = _HDR.unpack_from(buf)
            if hlen > MAX_HEADER:
                raise ValueError("frame header too large")
            start = _HDR.size + hlen
            if blen > self.limit and len(buf) >= start:
                self.dropped, self.drop = (kind, bytes(buf[_HDR.size:start]), None), blen
                del buf[:start]
                continue
            if len(buf) < start + blen:
                return out
            out.append((kind, bytes(buf[_HDR.size:start]), bytes(buf[start:start + blen])))
            del buf[:start + blen]


class _KillCheck:
    """Was the runtime SIGKILLed while frozen (still alive until it runs after the thaw)? One pread of
    its /proc stat on a descriptor kept open (every warm invocation asks): the pending signals, where a
    kill puts SIGKILL for each of the process's threads, until it dequeues it to exit; then PF_EXITING;
    then the state (Z, X). (Its channel's hang-up, once its files are closed, is relay()'s to see.)"""

    def __init__(self, st):
        self.st, self.fd, self.pid = st, -1, 0

    def __call__(self) -> bool:
        pid = self.st.runtime_pid
        if pid <= 0:
            return False
        try:
            if pid != self.pid:
                if self.fd >= 0:
                    os.close(self.fd)
                self.fd, self.pid = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC), pid
            fields = os.pread(self.fd, 4096, 0).rsplit(b")", 1)[1].split()
            return (fields[0] in (b"Z", b"X") or bool(int(fields[6]) & _PF_EXITING)
                    or bool(int(fields[28]) & _SIGKILL_BIT))
        except (OSError, ValueError, IndexError):
            return False


def _hung_up(chan: socket.socket) -> bool:
    """The runtime's end of the channel is closed (it exited): one poll(0)."""
    p = select.poll()
    p.register(chan, _HANGUP)
    return bool(p.poll(0))


def _event_frame(hdr: dict, payload: bytes) -> bytes:
    """The event and what GET /next's headers carry, NUL-separated (cheaper than JSON at both ends;
    the client context, which may hold anything, comes last): request id, deadline, function ARN,
    trace id, tenant id, client context."""
    head = "\0".join((hdr["request_id"], str(hdr["deadline_ms"]), hdr["invoked_function_arn"], hdr.get("trace_id") or "",
                      hdr.get("tenant_id") or "", hdr.get("client_context") or "")).encode("utf-8", "surrogateescape")
    return _HDR.pack(EVENT, len(head), len(payload)) + head + payload


def relay(st, sock: socket.socket, reader: bridge.FrameReader, api, chan: socket.socket, max_response: int,
          first_next) -> None:
    """init's loop with a forked Python runtime: the bridge, the channel and the runtime's output in
    one thread (no log pump thread meanwhile). `st` is init's _State (send, drain_logs, log_fd, cond,
    current, runtime_pid). Returns when init's own relay (the HTTP Runtime API) must take over: at the
    runtime's first request when `first_next()` says so (an extension or a Telemetry subscriber takes
    part in invocations: the channel is closed and the runtime turns to HTTP), or at a bridge frame
    other than INVOKE and API_RESPONSE, which is put back for that relay to read."""
    frames, killed = _Frames(max_response), _KillCheck(st)
    poll = select.poll()
    # Polled in this order: a result seen on the channel means the output the runtime wrote before it
    # is seen on the pipe in the same poll, and it is forwarded first (an invocation's log is complete
    # when its result arrives).
    for fd in (sock, chan, st.log_fd):
        poll.register(fd, select.POLLIN)
    bridge_fd, chan_fd, log_fd = sock.fileno(), chan.fileno(), st.log_fd
    waiting, queued = False, None       # the runtime waits for an event; an event not yet handed over
    while True:
        ready = dict(poll.poll())
        if log_fd in ready:
            st.drain_logs()
            if ready[log_fd] & (select.POLLHUP | select.POLLERR):
                poll.unregister(log_fd)  # every writer closed it: drained to the end
                log_fd = -1
        if chan_fd in ready:
            try:
                data = chan.recv(1 << 20)
                got = frames.feed(data) if data else None
            except (OSError, ValueError):
                got = None
            if got is None:             # the runtime is gone (the reaper says so) or broke its end
                poll.unregister(chan_fd)
                chan_fd, waiting, got = -1, False, []
            for kind, head, body in got:
                if kind == NEXT:
                    if not first_next():
                        chan.close()    # before any event: the runtime asks the HTTP API instead
                        return
                    waiting = True
                else:
                    waiting = _from_runtime(st, kind, head, body, max_response) or waiting
        if bridge_fd in ready:
            try:
                data = sock.recv(1 << 20)
                if not data:
                    raise bridge.BridgeClosed()
                reader.feed(data)
                while (frame := reader.next_frame()) is not None:
                    kind, hdr, body = frame
                    if kind == bridge.INVOKE:
                        queued = (hdr, body)
                    elif kind == bridge.API_RESPONSE:
                        api.deliver(hdr, body)
                    else:
                        reader.unread(kind, hdr, body)
                        return
            except (bridge.BridgeClosed, bridge.ProtocolError, OSError):
                os._exit(0)             # host closed: as PID 1 our exit kills the namespace
        if queued is not None and waiting:
            hdr, payload = queued
            queued, waiting = None, False
            if hdr.get("after_thaw") and (killed() or _hung_up(chan)):
                continue                # killed while frozen: the event stays untaken, EXIT says so
            with st.cond:
                st.current = hdr["request_id"]
            try:
                chan.sendall(_event_frame(hdr, payload))
            except OSError:
                with st.cond:           # never reached it: not taken
                    st.current = None


def _from_runtime(st, kind: int, head: bytes, body: bytes | None, max_response: int) -> bool:
    """One frame from the runtime (after its first NEXT); True when it now waits for an event."""
    # (no drain_logs() here: relay() has forwarded the output written before this frame)
    if kind == INIT_ERROR:
        st.send(bridge.INIT_ERROR, {"error_type": head.decode("utf-8", "replace")}, (body or b"")[:max_response])
        return False
    if kind not in (RESPONSE, ERROR):
        return False
    rid, _, error_type = head.decode("utf-8", "replace").partition("\n")
    with st.cond:
        if rid != st.current:
            return True                 # (the HTTP API answers InvalidRequestID): nothing to relay
        st.current = None
    if body is None:
        msg = f"Response payload size exceeded maximum allowed payload size ({max_response} bytes)."
        st.send(bridge.ERROR, {"request_id": rid, "error_type": "Function.ResponseSizeTooLarge"},
                json.dumps({"errorMessage": msg, "errorType": "Function.ResponseSizeTooLarge"}).encode())
    elif kind == RESPONSE:
        st.send(bridge.RESULT, {"request_id": rid}, body)
    else:
        st.send(bridge.ERROR, {"request_id": rid, "error_type": error_type}, body)
    return True
