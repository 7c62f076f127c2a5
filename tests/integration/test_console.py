"""The web console in a real browser (Debian's chromium driven by Selenium) against a real local cluster.

Every page is loaded, the numbers it shows are checked against the brokers' and managers' own
API answers, and each test keeps screenshots under its tmp_path (the directory is printed). The
browser is headless; as root chromium needs --no-sandbox (its setuid sandbox refuses to run as
root), and --disable-dev-shm-usage because /dev/shm is small in containers.
"""

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
import requests

from myqueue import ApiHandler, Producer
from tests.helpers import wait_until

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
TOKEN = "console-test-token-not-a-secret"

if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
    if os.environ.get("MYQUEUE_REQUIRE_BROWSER"):
        raise RuntimeError(f"MYQUEUE_REQUIRE_BROWSER is set but {CHROMIUM} or {CHROMEDRIVER} is missing")
    pytest.skip(
        "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402 - only once the browser is known to be there
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402


class Browser:
    def __init__(self, shots: Path):
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in (
            "--headless=new",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--window-size=1280,900",
            "--no-first-run",
            "--disable-extensions",
        ):
            options.add_argument(arg)
        if os.geteuid() == 0:
            options.add_argument("--no-sandbox")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        # The driver's path is given: Selenium Manager never runs, nothing is downloaded.
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(20)
        self.shots = shots
        shots.mkdir(parents=True, exist_ok=True)
        print(f"console screenshots: {shots}")

    def get(self, url: str) -> None:
        self.driver.get(url)

    def text(self, css: str) -> str:
        return self.driver.find_element(By.CSS_SELECTOR, css).text

    def all(self, css: str):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        assert self.driver.save_screenshot(str(path)), path
        return path

    def wait_text(self, css: str, predicate, timeout: float = 20, reload: bool = False) -> str:
        seen = {"text": None}

        def check():
            if reload:
                self.driver.refresh()
            found = self.all(css)
            seen["text"] = found[0].text if found else None
            return seen["text"] is not None and predicate(seen["text"])

        wait_until(
            check,
            timeout,
            message=lambda: (
                f"{css} last showed {seen['text']!r} on "
                f"{self.driver.current_url}: {self.driver.find_element(By.TAG_NAME, 'body').text[:300]!r}"
            ),
        )
        return seen["text"]

    def console_errors(self) -> list[dict]:
        return [e for e in self.driver.get_log("browser") if e.get("level") == "SEVERE"]


@pytest.fixture
def browser(tmp_path):
    b = Browser(tmp_path / "console-screenshots")
    try:
        yield b
    finally:
        b.driver.quit()


def broker_partitions(cluster, token=None) -> dict[tuple[str, str], int]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    view = requests.get(f"{cluster.replica_url}/v1/metadata", headers=headers, timeout=10).json()["message"]
    ends = {}
    for broker in view["brokers"].values():
        answer = requests.get(f"{broker['address']}/v1/partitions", headers=headers, timeout=10).json()[
            "message"
        ]
        ends.update({(p["topic"], p["partition"]): p["end_offset"] for p in answer["partitions"]})
    return ends


def setup_topic(cluster, token=None) -> ApiHandler:
    api = ApiHandler(
        "127.0.0.1", primary=str(cluster.primary_port), readonly=str(cluster.replica_port), token=token
    )
    api.add_topic("T1", "P1")
    api.add_topic("T1", "P2")
    api.add_topic("T2", "P1")
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    def synced():
        topics = requests.get(f"{cluster.replica_url}/topics", headers=headers, timeout=10).json()["message"]
        return {"T1", "T2"} <= set(topics) and len(topics["T1"]) == 2

    wait_until(synced, 20, message="the replica never saw T1 (2 partitions) and T2")
    return api


SPECIAL = [b'{"a": 1, "b": [1, 2]}', b"\x00\xff\x10bin\x7f", b"<script>alert(1)</script><b>bold</b>"]


def test_console_pages_show_what_the_api_answers(local_cluster, browser):
    with local_cluster(store="memory", brokers=2) as cluster:
        api = setup_topic(cluster)
        args = {
            "host": "127.0.0.1",
            "primary_port": cluster.primary_port,
            "replica_port": cluster.replica_port,
        }
        with Producer(**args) as producer:
            producer.send_batch("T1", "P1", SPECIAL + [f"m{i}".encode() for i in range(22)])
            producer.send_batch("T1", "P2", [f"n{i}" for i in range(7)])
        ends = broker_partitions(cluster)
        assert ends[("T1", "P1")] == 25 and ends[("T1", "P2")] == 7 and ends[("T2", "P1")] == 0
        base = f"{cluster.replica_url}/console"
        view = requests.get(f"{cluster.replica_url}/v1/metadata", timeout=10).json()["message"]

        # Security headers on every answer, pages and static files alike.
        for path in ("/cluster", "/static/console.js", "/api/throughput"):
            answer = requests.get(f"{base}{path}", timeout=10)
            assert answer.status_code == 200, path
            csp = answer.headers["Content-Security-Policy"]
            assert (
                "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
            )
            assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert requests.post(f"{base}/cluster", timeout=10).status_code == 405  # pages are GET-only

        # Cluster: every broker up, the partitions each one is given in the view, the primary reachable.
        browser.get(f"{base}/")
        assert browser.driver.current_url.endswith("/console/cluster")
        rows = browser.all("#brokers tbody tr")
        assert [r.get_attribute("data-broker") for r in rows] == sorted(view["brokers"])
        placed = {name: 0 for name in view["brokers"]}
        for parts in view["topics"].values():
            for p in parts:
                placed[p["broker"]] += 1
        for row in rows:
            name = row.get_attribute("data-broker")
            assert row.find_element(By.CSS_SELECTOR, ".health").text == "up"
            assert int(row.find_element(By.CSS_SELECTOR, ".placed").text) == placed[name]
            assert int(row.find_element(By.CSS_SELECTOR, ".hosted").text) == placed[name]
        assert browser.text("#primary-reachable") == "reachable"
        assert browser.text("#brokers-up") == "2 / 2"
        browser.shot("cluster")

        # Topics: records (sum of end offsets) as the brokers answer; the rate cell is filled by the script.
        browser.get(f"{base}/topics")
        by_topic = {r.get_attribute("data-topic"): r for r in browser.all("#topics tbody tr")}
        assert set(by_topic) == {"T1", "T2"}
        assert by_topic["T1"].find_element(By.CSS_SELECTOR, ".end-offsets").text == "32"
        assert by_topic["T1"].find_element(By.CSS_SELECTOR, ".partitions").text == "2"
        browser.wait_text('#topics [data-rate-topic="T1"]', lambda t: t.endswith("rec/s"))
        browser.shot("topics")

        # One topic: each partition's end offset equals the broker's answer.
        browser.get(f"{base}/topics/T1")
        for row in browser.all("#partitions tbody tr"):
            part = row.get_attribute("data-partition")
            assert int(row.find_element(By.CSS_SELECTOR, ".end-offset").text) == ends[("T1", part)]
            assert row.find_element(By.CSS_SELECTOR, ".log-start").text == "0"
        browser.shot("topic")

        # Records: from an offset, as text / JSON / hex; markup in a value is shown, never run.
        browser.get(f"{base}/topics/T1/P1/records?offset=0&limit=5")
        offsets = [int(r.get_attribute("data-offset")) for r in browser.all("#records tbody tr")]
        assert offsets == [0, 1, 2, 3, 4]
        values = [v.text for v in browser.all("#records pre.value")]
        assert values[0] == SPECIAL[0].decode() and values[3] == "m0"
        assert values[2] == "<script>alert(1)</script><b>bold</b>"
        assert not browser.all("#records pre.value script, #records pre.value b")
        assert "\\x00" in values[1] and "\\x10" in values[1]
        assert browser.text("#end-offset") == "25"
        browser.shot("records-text")
        browser.get(f"{base}/topics/T1/P1/records?offset=0&limit=2&format=json")
        assert browser.all("#records pre.value")[0].text == json.dumps(json.loads(SPECIAL[0]), indent=2)
        browser.get(f"{base}/topics/T1/P1/records?offset=1&limit=1&format=hex")
        assert browser.text("#records pre.value").startswith("00000000  00 ff 10 62 69 6e 7f")
        browser.get(f"{base}/topics/T1/P1/records?offset=20&limit=10")
        assert [int(r.get_attribute("data-offset")) for r in browser.all("#records tbody tr")] == [
            20,
            21,
            22,
            23,
            24,
        ]
        assert not browser.all("#next")
        browser.shot("records-hex")

        # Consumer groups: the "not yet" panel, and a group's positions with lag = end - position.
        consumer = api.reg_consumer("T1", "P2")  # a seed consumer starts at the latest offset
        with Producer(**args) as producer:
            producer.send_batch("T1", "P2", ["late0", "late1", "late2"])
        assert api.consume(consumer).message == "late0"
        group = f"myqueue.seed.c{consumer}"
        broker = view["brokers"][next(p["broker"] for p in view["topics"]["T1"] if p["partition"] == "P2")]
        position = requests.get(
            f"{broker['address']}/v1/partitions/T1/P2/positions/{group}", timeout=10
        ).json()["message"]
        assert (position["offset"], position["end_offset"]) == (8, 10)
        browser.get(f"{base}/groups?topic=T1&group={group}")
        assert "no consumer-group coordinator" in browser.text("#groups-not-yet")
        row = browser.driver.find_element(By.CSS_SELECTOR, '#positions tr[data-partition="P2"]')
        assert row.find_element(By.CSS_SELECTOR, ".position").text == "8"
        assert row.find_element(By.CSS_SELECTOR, ".end").text == "10"
        assert row.find_element(By.CSS_SELECTOR, ".lag").text == "2"
        browser.shot("groups")

        # Throughput: the script polls the console's JSON and draws a line that shows the produce rate.
        browser.get(f"{base}/throughput")
        browser.wait_text(
            "body",
            lambda _t: (
                int(browser.driver.find_element(By.TAG_NAME, "body").get_attribute("data-polls") or 0) >= 2
            ),
        )
        with Producer(**args) as producer:

            def rate_seen():
                producer.send_batch("T2", "P1", [b"x"] * 50)
                figure = browser.driver.find_element(By.CSS_SELECTOR, 'figure[data-chart-topic="T2"]')
                return float(figure.get_attribute("data-last") or 0) > 0

            wait_until(rate_seen, 30, message="the T2 chart never showed a produce rate above 0")
        expected = broker_partitions(cluster)[("T2", "P1")]
        seen = {}

        def api_caught_up():  # the console reuses a cluster snapshot for up to a second
            seen.update(requests.get(f"{base}/api/throughput", timeout=10).json())
            return seen["end_offsets"]["T2:P1"] == expected

        wait_until(
            api_caught_up,
            10,
            message=lambda: (
                f"the console's JSON shows {seen.get('end_offsets')}, the broker {expected} for T2:P1"
            ),
        )
        assert not browser.console_errors(), browser.console_errors()  # no CSP violation, no script error
        browser.shot("throughput")

        # The primary stopped: the console keeps serving from the replica's view, then says it is unreachable.
        cluster.kill("primary", signal.SIGSTOP)
        try:
            browser.get(f"{base}/topics")
            by_topic = {r.get_attribute("data-topic"): r for r in browser.all("#topics tbody tr")}
            assert by_topic["T1"].find_element(By.CSS_SELECTOR, ".end-offsets").text == "35"
            browser.get(f"{base}/topics/T1/P1/records?offset=3&limit=1")
            assert browser.text("#records pre.value") == "m0"
            browser.get(f"{base}/cluster")
            browser.wait_text("#primary-reachable", lambda t: t == "unreachable", timeout=60, reload=True)
            assert browser.text("#brokers-up") == "2 / 2"
            browser.shot("cluster-primary-down")
        finally:
            cluster.kill("primary", signal.SIGCONT)

        # A hung broker (stopped: connections are accepted, nothing answers) shows as down, within the
        # console's short broker timeout; no page waits on it for long.
        cluster.kill("broker1", signal.SIGSTOP)
        try:
            loads = []

            def broker1_down():
                started = time.monotonic()
                browser.get(f"{base}/cluster")
                loads.append(time.monotonic() - started)
                row = browser.driver.find_element(By.CSS_SELECTOR, '#brokers tr[data-broker="broker1"]')
                return row.find_element(By.CSS_SELECTOR, ".health").text.startswith("down")

            wait_until(
                broker1_down, 20, message=lambda: f"broker1 never shown down (page loads took {loads} s)"
            )
            assert max(loads) < 5, loads
            assert browser.text("#brokers-up") == "1 / 2"
            view = requests.get(f"{cluster.replica_url}/v1/metadata", timeout=10).json()["message"]
            on_broker1 = [
                (t, p["partition"])
                for t, parts in view["topics"].items()
                for p in parts
                if p["broker"] == "broker1"
            ]
            if on_broker1:  # the primary may have moved them already
                topic, part = on_broker1[0]
                started = time.monotonic()
                browser.get(f"{base}/topics/{topic}/{part}/records?offset=0")
                assert time.monotonic() - started < 5
                assert "did not answer" in browser.text("#fetch-error")
            browser.shot("cluster-broker-down")
        finally:
            cluster.kill("broker1", signal.SIGCONT)


def test_console_login_with_auth_on(local_cluster, browser, monkeypatch):
    monkeypatch.setenv("MYQUEUE_TOKEN", TOKEN)  # the supervisor passes it on to every service
    with local_cluster(store="memory", brokers=2) as cluster:
        monkeypatch.delenv("MYQUEUE_TOKEN")
        setup_topic(cluster, TOKEN)
        with Producer(
            host="127.0.0.1",
            primary_port=cluster.primary_port,
            replica_port=cluster.replica_port,
            token=TOKEN,
        ) as producer:
            producer.send_batch("T1", "P1", [f"s{i}" for i in range(4)])
        base = f"{cluster.replica_url}/console"

        # Without credentials: pages send the browser to the login form, the JSON answers 401.
        assert requests.get(f"{base}/api/throughput", timeout=10).status_code == 401
        assert requests.get(f"{base}/cluster", allow_redirects=False, timeout=10).status_code == 303
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert requests.get(f"{base}/api/throughput", headers=bearer, timeout=10).status_code == 200
        # A cross-site login (a form on another site posting here) is refused by the guard.
        cross = requests.post(
            f"{base}/login",
            data={"token": TOKEN},
            allow_redirects=False,
            timeout=10,
            headers={"Origin": "http://evil.example"},
        )
        assert cross.status_code == 403 and "Set-Cookie" not in cross.headers

        browser.get(f"{base}/cluster")
        assert browser.driver.current_url.endswith("/console/login")
        browser.driver.find_element(By.ID, "token").send_keys("wrong")
        browser.driver.find_element(By.ID, "login").click()
        browser.wait_text("#login-error", lambda t: t == "wrong token", timeout=10)
        browser.shot("login-wrong")
        browser.driver.find_element(By.ID, "token").send_keys(TOKEN)
        browser.driver.find_element(By.ID, "login").click()
        wait_until(
            lambda: browser.driver.current_url.endswith("/console/cluster"),
            10,
            message=lambda: f"after login the browser is at {browser.driver.current_url}",
        )
        assert TOKEN not in browser.driver.current_url
        assert browser.text("#brokers-up") == "2 / 2"
        (cookie,) = browser.driver.get_cookies()
        assert cookie["name"] == "myqueue_console" and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert cookie["path"] == "/console" and TOKEN not in cookie["value"]
        browser.get(f"{base}/topics/T1/P1/records?offset=0")
        assert [v.text for v in browser.all("#records pre.value")] == ["s0", "s1", "s2", "s3"]
        browser.get(f"{base}/throughput")
        browser.wait_text(
            "body",
            lambda _t: (
                int(browser.driver.find_element(By.TAG_NAME, "body").get_attribute("data-polls") or 0) >= 1
            ),
        )
        browser.shot("logged-in")

        # The cookie works for the console only, and not after logout.
        jar = {"myqueue_console": cookie["value"]}
        assert requests.get(f"{base}/api/throughput", cookies=jar, timeout=10).status_code == 200
        assert requests.get(f"{cluster.replica_url}/topics", cookies=jar, timeout=10).status_code == 401
        browser.driver.find_element(By.ID, "logout").click()
        wait_until(
            lambda: browser.driver.current_url.endswith("/console/login"),
            10,
            message=lambda: f"after logout the browser is at {browser.driver.current_url}",
        )
        assert not browser.driver.get_cookies()
        assert requests.get(f"{base}/api/throughput", cookies=jar, timeout=10).status_code == 401
        browser.get(f"{base}/topics")
        assert browser.driver.current_url.endswith("/console/login")
