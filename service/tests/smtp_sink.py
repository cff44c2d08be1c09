"""A real SMTP server for the email tests: aiosmtpd (Debian's
python3-aiosmtpd) on 127.0.0.1:PORT, writing each accepted message to
DIR as a JSON file with its envelope (sender, recipients, the user that
authenticated) and its text.

    python3 smtp_sink.py PORT DIR [--starttls CERT KEY | --tls CERT KEY] [--auth USER:PASS]

--starttls requires STARTTLS before MAIL; --tls is TLS from the first
byte (smtps); --auth requires AUTH with these credentials. It prints
"ready" once it listens and runs until killed.
"""

import json
import os
import ssl
import sys
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


class Sink:
    def __init__(self, folder):
        self.folder = folder
        self.n = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.n += 1
            name = "%d-%06d" % (time.time_ns(), self.n)
        login = session.auth_data.login.decode() if session.auth_data else None
        tmp = os.path.join(self.folder, "." + name)
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "from": envelope.mail_from,
                    "to": envelope.rcpt_tos,
                    "auth": login,
                    "tls": server.transport.get_extra_info("sslcontext") is not None,
                    "data": envelope.content.decode("utf-8", "replace"),
                },
                f,
            )
        # Whole or not at all: the test reads only renamed files.
        os.rename(tmp, os.path.join(self.folder, name + ".json"))
        return "250 Message accepted for delivery"


def context(cert, key):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


def main():
    port, folder = int(sys.argv[1]), sys.argv[2]
    args = sys.argv[3:]
    kwargs = {}
    ssl_context = None
    while args:
        flag = args.pop(0)
        if flag == "--starttls":
            kwargs["tls_context"] = context(args.pop(0), args.pop(0))
            kwargs["require_starttls"] = True
        elif flag == "--tls":
            ssl_context = context(args.pop(0), args.pop(0))
        elif flag == "--auth":
            user, password = args.pop(0).split(":", 1)

            def check(server, session, envelope, mechanism, data):
                ok = data.login.decode() == user and data.password.decode() == password
                return AuthResult(success=ok, auth_data=data)

            kwargs["authenticator"] = check
            kwargs["auth_required"] = True
            # Credentials only over TLS. aiosmtpd counts only STARTTLS as
            # TLS; with --tls the whole connection is TLS already.
            kwargs["auth_require_tls"] = ssl_context is None
        else:
            raise SystemExit("unknown flag " + flag)
    os.makedirs(folder, exist_ok=True)
    controller = Controller(
        Sink(folder), hostname="127.0.0.1", port=port, ssl_context=ssl_context, **kwargs
    )
    controller.start()
    print("ready", flush=True)
    try:
        threading.Event().wait()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
