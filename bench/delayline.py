#!/usr/bin/env python3
"""ssh ProxyCommand: relay stdin/stdout <-> HOST:PORT, holding each chunk DELAY_MS in each direction
(a one-way delay line; the kernel here has no sch_netem)."""
import socket, sys, threading, time, queue, os
host, port, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]) / 1000.0
sock = socket.create_connection((host, port))
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
def pump(read, write, close_write):
    q = queue.Queue()
    def reader():
        while True:
            data = read()
            q.put((time.monotonic() + delay, data))
            if not data: return
    def writer():
        while True:
            due, data = q.get()
            wait = due - time.monotonic()
            if wait > 0: time.sleep(wait)
            if not data: close_write(); return
            write(data)
    threading.Thread(target=reader, daemon=True).start()
    t = threading.Thread(target=writer); t.start(); return t
inp, out = sys.stdin.fileno(), sys.stdout.fileno()
def write_out(d):
    v = memoryview(d)
    while v: n = os.write(out, v); v = v[n:]
t1 = pump(lambda: os.read(inp, 65536), sock.sendall, lambda: sock.shutdown(socket.SHUT_WR))
t2 = pump(lambda: sock.recv(65536), write_out, lambda: os.close(out))
t2.join()
