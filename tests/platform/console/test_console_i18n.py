"""English and Simplified Chinese UI text (issue 15 item 5): every string the templates ask
for has a Chinese entry, and the language follows the user's choice, else the browser's."""

from __future__ import annotations

import re
from pathlib import Path

from platform_world import World, make_world
from test_console_pages import console_login

from sharedml.platform.console import i18n
from sharedml.platform.console.web import HERE, PREFIX

ASKED = re.compile(r"""_\(\s*(["'])(.+?)\1\s*\)""")


def asked_for() -> set[str]:
    found: set[str] = set()
    for template in (HERE / "templates").glob("*.html"):
        found |= {m.group(2) for m in ASKED.finditer(template.read_text(encoding="utf-8"))}
    return found


def test_every_template_string_has_a_chinese_entry() -> None:
    asked = asked_for()
    assert len(asked) > 60
    missing = sorted(asked - set(i18n.ZH))
    assert not missing, f"no Simplified Chinese for {missing}"
    assert all(i18n.ZH[s].strip() and i18n.ZH[s] != s for s in asked)


def test_the_language_follows_the_user_then_the_browser(tmp_path: Path) -> None:
    w: World = make_world(tmp_path)
    console_login(w, "analyst")
    english = w.client.get(f"{PREFIX}/jobs", headers={"Accept-Language": "en-GB"})
    assert '<html lang="en">' in english.text and ">Jobs<" in english.text
    chinese = w.client.get(f"{PREFIX}/jobs", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert '<html lang="zh-CN">' in chinese.text and ">任务<" in chinese.text
    # the user's stored choice wins over the browser's
    page = w.client.get(f"{PREFIX}/jobs")
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert token
    r = w.client.post(f"{PREFIX}/language", data={"csrf": token.group(1), "locale": "zh"},
                      headers={"Referer": f"{PREFIX}/jobs"}, follow_redirects=False)
    assert r.status_code == 303
    stored = w.client.get(f"{PREFIX}/jobs", headers={"Accept-Language": "en-GB"})
    assert '<html lang="zh-CN">' in stored.text
    assert w.platform.users.by_name("analyst").locale == "zh"
