"""Print where each service listens and how to get a first token (`make run`)."""

from __future__ import annotations

from pathlib import Path

PORTS = [("catalog", 8001), ("orders", 8002), ("access", 8003), ("audit", 8004),
         ("dataservice", 8010), ("localstripe", 8420)]


def main() -> None:
    env = {}
    for line in Path("var/dev.env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            env[k] = v
    cid = env.get("SLUICE_ACCESS_BOOTSTRAP_CLIENT_ID", "operator")
    secret = env.get("SLUICE_ACCESS_BOOTSTRAP_CLIENT_SECRET", "?")
    print("\nSluice is starting (Ctrl-C stops everything):")
    for name, port in PORTS:
        docs = "" if name == "localstripe" else f"   docs: http://127.0.0.1:{port}/docs"
        print(f"  {name:<12} http://127.0.0.1:{port}{docs}")
    print("\nOperator credentials are in var/dev.env. Get a first token:")
    print(f"  curl -s -u {cid}:{secret} -d grant_type=client_credentials "
          "http://127.0.0.1:8003/oauth/token\n")


if __name__ == "__main__":
    main()
