"""A real SMTP server for the email tests: aiosmtpd (Debian's
python3-aiosmtpd) on 127.0.0.1:PORT, writing each accepted message to
DIR as a JSON file with its envelope (sender, recipients) and its text.

    python3 smtp_sink.py PORT DIR

It prints "ready" once it listens and runs until killed.
"""

import json
import os
import sys
import threading
import time

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, folder):
        self.folder = folder
        self.n = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.n += 1
            name = "%d-%06d" % (time.time_ns(), self.n)
        tmp = os.path.join(self.folder, "." + name)
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "from": envelope.mail_from,
                    "to": envelope.rcpt_tos,
                    "data": envelope.content.decode("utf-8", "replace"),
                },
                f,
            )
        # Whole or not at all: the test reads only renamed files.
        os.rename(tmp, os.path.join(self.folder, name + ".json"))
        return "250 Message accepted for delivery"


def main():
    port, folder = int(sys.argv[1]), sys.argv[2]
    os.makedirs(folder, exist_ok=True)
    controller = Controller(Sink(folder), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    try:
        threading.Event().wait()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
