# The log server of one of the example's shipping commands (`nc HOST PORT`; a TCP input, as
# Vector's or Logstash's): every byte received on PORT, appended to
# /var/lib/rehearsal-collector/received-PORT.log. The listening socket comes from
# rehearsal-collector-PORT.socket, so it is there before the shipper starts.
import os
import socket
import sys
import threading

[port] = sys.argv[1:]
os.makedirs("/var/lib/rehearsal-collector", exist_ok=True)
out = open(f"/var/lib/rehearsal-collector/received-{port}.log", "ab", buffering=0)
lock = threading.Lock()
listener = socket.socket(fileno=3)


def receive(connection):
    with connection:
        while data := connection.recv(65536):
            with lock:
                out.write(data)


while True:
    connection, _ = listener.accept()
    threading.Thread(target=receive, args=(connection,), daemon=True).start()
