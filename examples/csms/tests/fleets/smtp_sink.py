"""An SMTP server for tests/fleets.rs (aiosmtpd, PyPI): every message it
receives is written to DIR as one JSON file: envelope, headers, the text
part and each attachment with the text pypdf extracts from a PDF.

    python smtp_sink.py PORT DIR
"""

import email
import email.policy
import io
import json
import os
import sys
import threading

from aiosmtpd.controller import Controller
from pypdf import PdfReader


class Sink:
    def __init__(self, out):
        self.out = out
        self.n = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text = ""
        attachments = []
        for part in msg.walk():
            if part.is_multipart():
                continue
            if part.get_filename():
                data = part.get_payload(decode=True)
                entry = {
                    "filename": part.get_filename(),
                    "content_type": part.get_content_type(),
                    "bytes": len(data),
                }
                if part.get_content_type() == "application/pdf":
                    reader = PdfReader(io.BytesIO(data))
                    entry["pages"] = len(reader.pages)
                    entry["text"] = "\n".join(p.extract_text() for p in reader.pages)
                attachments.append(entry)
            elif part.get_content_type() == "text/plain":
                text += part.get_content()
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "subject": str(msg["subject"]),
            "message_id": str(msg["message-id"]),
            "text": text,
            "attachments": attachments,
        }
        with self.lock:
            self.n += 1
            name = os.path.join(self.out, "%04d.json" % self.n)
        with open(name + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(name + ".tmp", name)
        return "250 OK"


def main():
    port, out = int(sys.argv[1]), sys.argv[2]
    os.makedirs(out, exist_ok=True)
    controller = Controller(Sink(out), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
