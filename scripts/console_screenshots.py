#!/usr/bin/env python3
"""Screenshots of the web console for the README, from a running local cluster.

    kms-cluster up --detach
    kms-load --duration 100s --concurrency 4 &       # something for the activity chart
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


def small(path: Path) -> None:
    """256 colours are plenty for a page of text and lines, and a quarter of the bytes."""
    from PIL import Image  # Pillow comes with matplotlib (the reports' plots)

    with Image.open(path) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


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
                "--window-size=1280,800"):
        options.add_argument(arg)
    options.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        driver.get(url + "/signin")
        driver.find_element(By.ID, "access_key_id").send_keys(status["aws_access_key_id"])
        driver.find_element(By.ID, "secret_access_key").send_keys(status["aws_secret_access_key"])
        driver.find_element(By.ID, "signin").click()
        for page, wait_s in (("stores", 1), ("keys", 1), ("key", 1), ("hsm", 2), ("activity", 6)):
            if page == "key":  # the first key's own page: policy, grants, tags, aliases
                driver.get(driver.find_element(By.CSS_SELECTOR, "#keys a").get_attribute("href"))
            else:
                driver.get(f"{url}/{page}")
            time.sleep(wait_s)  # a screenshot, not a test: let the page draw and refresh once
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(1280, max(600, min(int(height) + 140, 1400)))  # + the window's frame
            time.sleep(0.5)
            path = args.out / f"console-{page}.png"
            driver.save_screenshot(str(path))
            small(path)
            print(path, f"{path.stat().st_size // 1024} KB")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
