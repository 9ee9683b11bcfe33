"""Drives sesgate with Python's smtplib, as a legacy Python application would.

usage: smtplib_client.py PORT CAFILE USER PASSWORD MODE
MODE: starttls (port speaks STARTTLS) or implicit (SMTP_SSL). Prints one line per check.
"""
import smtplib
import ssl
import sys

port, cafile, user, password, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
context = ssl.create_default_context(cafile=cafile)
message = "From: Sender <sender@example.com>\r\nTo: rcpt@example.com\r\nSubject: smtplib\r\n\r\n.leading dot\r\nbody\r\n"

if mode == "starttls":
    client = smtplib.SMTP("localhost", port, timeout=30)
    client.ehlo("python.test")
    code, text = client.docmd("AUTH", "LOGIN")
    print(f"auth-before-tls {code} {text.decode()}")
    code, text = client.docmd("MAIL", "FROM:<sender@example.com>")
    print(f"mail-before-auth {code} {text.decode()}")
    client.starttls(context=context)
    client.ehlo("python.test")
else:
    client = smtplib.SMTP_SSL("localhost", port, context=context, timeout=30)
    client.ehlo("python.test")

try:
    client.login(user, "wrong password")
except smtplib.SMTPAuthenticationError as error:
    print(f"wrong-password {error.smtp_code} {error.smtp_error.decode()}")
client.login(user, password)
print("login ok")
refused = client.sendmail("sender@example.com", ["rcpt@example.com", "other@example.com"], message)
print(f"sendmail refused={refused}")
code, text = client.noop()
print(f"noop {code}")
client.quit()
