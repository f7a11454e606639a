"""Play a browser inside the guest, with the standard library: `python3 probe.py URL`.

Follows redirects (the callback's 303 to its result page) and prints one JSON line:
{"status": ..., "url": <the last address>, "body": ...}. A refused connection is
status 0, so that the test on the host sees every outcome the same way.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request


def main(url: str) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=20) as response:
            status, final, body = response.status, response.url, response.read()
    except urllib.error.HTTPError as error:
        status, final, body = error.code, error.url, error.read()
    except OSError as error:
        status, final, body = 0, url, str(error).encode()
    print(json.dumps({"status": status, "url": final, "body": body.decode(errors="replace")}))


if __name__ == "__main__":
    main(sys.argv[1])
