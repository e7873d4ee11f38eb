"""The floor for the onQ export: fetch, parse, write one JSON line per record, nothing else.

`python -m bench.bare_onq CONFIG OUT` reads the tap config file CONFIG (its `onq` object),
pages through `GET /conversations?size=&page=` with the same self-signed HS256 JWT the tap
sends, decodes each page with `json`, writes every record as one JSON line to OUT (the
benchmark passes /dev/null) and prints `{"records": n, "requests": m}` on stdout.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

import jwt
import requests

TOKEN_LIFETIME = 3600


def bearer_token(onq: dict[str, str]) -> str:
    issued_at = int(time.time())
    claims = {
        "iss": onq["issuer"],
        "sub": onq["subject"],
        "aud": onq["audience"],
        "iat": issued_at,
        "exp": issued_at + TOKEN_LIFETIME,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, onq["api_secret"], algorithm="HS256", headers={"kid": onq["api_key"]})


def main(config_path: str, out_path: str) -> int:
    onq = json.loads(Path(config_path).read_text())["onq"]
    size = int(onq.get("page_size", 1000))
    url = f"{onq['api_url']}/conversations"
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {bearer_token(onq)}"
    records = requests_made = 0
    with Path(out_path).open("w") as out:
        page = 1
        while True:
            response = session.get(url, params={"size": size, "page": page}, timeout=60)
            requests_made += 1
            response.raise_for_status()
            rows = json.loads(response.content)
            for row in rows:
                out.write(json.dumps(row) + "\n")
            records += len(rows)
            if len(rows) < size:
                break
            page += 1
    print(json.dumps({"records": records, "requests": requests_made}))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
