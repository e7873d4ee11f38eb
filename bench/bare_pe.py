"""The floor for Perform & Engage conversations and their details: fetch, parse, write.

`python -m bench.bare_pe CONFIG OUT` reads the tap config file CONFIG (its `perform_engage`
object), pages through `GET /conversations/?limit=` following `next`, then for every
conversation sends `GET /conversations/<api_id>/` (id percent-encoded, as the tap does), one at
a time, with HTTP Basic auth on one `requests.Session`. Each list record and each detail is
decoded with `json` and written as one JSON line to OUT (the benchmark passes /dev/null); it
prints `{"records": n, "requests": m}` on stdout. Plans are not read: the benchmark's detail
scenario runs the tap with conversation streams only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from urllib.parse import quote

import requests

PAGE_SIZE = 100


def main(config_path: str, out_path: str) -> int:
    provider = json.loads(Path(config_path).read_text())["perform_engage"]
    base = provider["api_url"].rstrip("/")
    session = requests.Session()
    session.auth = (provider["username"], provider["api_key"])
    records = requests_made = 0
    with Path(out_path).open("w") as out:
        url: str | None = f"{base}/conversations/?limit={PAGE_SIZE}&offset=0"
        while url:
            response = session.get(url, timeout=60)
            requests_made += 1
            response.raise_for_status()
            page = json.loads(response.content)
            for row in page["results"]:
                out.write(json.dumps(row) + "\n")
                detail = session.get(f"{base}/conversations/{quote(row['api_id'], safe='')}/")
                requests_made += 1
                detail.raise_for_status()
                out.write(json.dumps(json.loads(detail.content)) + "\n")
                records += 2
            url = page["next"]
    print(json.dumps({"records": records, "requests": requests_made}))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
