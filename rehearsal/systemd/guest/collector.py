# The log server of the example's logShipping.command (a TCP input, as Vector's or Logstash's):
# every byte received, appended to /var/lib/rehearsal-collector/received.log. The listening socket
# comes from rehearsal-collector.socket, so it is there before the shipper starts.
import os
import socket
import threading

os.makedirs("/var/lib/rehearsal-collector", exist_ok=True)
out = open("/var/lib/rehearsal-collector/received.log", "ab", buffering=0)
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
