#!/usr/bin/env python3
"""Screenshots of the web console for the README, from a running local cluster.

    kms-cluster up --detach
    kms-load --duration 60s --concurrency 8 &        # something for the activity chart
    python scripts/console_screenshots.py [--cluster-dir .kms-cluster] [--out docs/img]

Needs Debian's chromium and chromedriver and the ``selenium`` package (the test extras)."""
from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cluster-dir", default=".kms-cluster")
    p.add_argument("--out", type=Path, default=Path("docs/img"))
    args = p.parse_args()
    status = json.loads(subprocess.run(["kms-cluster", "--dir", args.cluster_dir, "status", "--json"],
                                       capture_output=True, text=True, check=True).stdout)
    url = status["console_url"].rstrip("/")
    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,720"):
        options.add_argument(arg)
    options.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        driver.get(url + "/signin")
        driver.find_element(By.ID, "access_key_id").send_keys(status["aws_access_key_id"])
        driver.find_element(By.ID, "secret_access_key").send_keys(status["aws_secret_access_key"])
        driver.find_element(By.ID, "signin").click()
        for page, wait_s in (("stores", 1), ("keys", 1), ("hsm", 2), ("activity", 6)):
            driver.get(f"{url}/{page}")
            time.sleep(wait_s)  # a screenshot, not a test: let the page draw and refresh once
            path = args.out / f"console-{page}.png"
            driver.save_screenshot(str(path))
            print(path)
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
