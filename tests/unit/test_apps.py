"""Several applications in one inventory (`apps`): validation, defaults, side by side."""

from __future__ import annotations

import pytest

from beamfleet.controller.deploys.apps import AppsError, app_entries, check_apps


def test_the_short_form_is_one_application() -> None:
    (entry,) = app_entries({"app_name": "shop", "app_replicas": 5})
    assert (entry.settings.name, entry.settings.replicas) == ("shop", 5)
    assert entry.settings.network == "beamfleet-shop"
    assert entry.build == "examples/demo"


def test_each_application_takes_the_top_level_keys_as_defaults() -> None:
    data = {
        "app_replicas": 4,
        "app_env": {"LOG": "info"},
        "apps": {
            "shop": {"subnet": "10.234.1.0/24", "build": "apps/shop"},
            "chat": {"subnet": "10.234.2.0/24", "replicas": 2, "cookie_file": "chat.cookie"},
        },
    }
    shop, chat = app_entries(data)
    assert (shop.settings.name, shop.settings.replicas, shop.build) == ("shop", 4, "apps/shop")
    assert (chat.settings.name, chat.settings.replicas, chat.cookie_file) == (
        "chat",
        2,
        "chat.cookie",
    )
    assert shop.settings.env == chat.settings.env == {"LOG": "info"}
    assert (shop.settings.network, chat.settings.network) == ("beamfleet-shop", "beamfleet-chat")
    assert [e.settings.name for e in app_entries(data, only="chat")] == ["chat"]
    # rollout.py's image replaces the selected application's only
    (rolled,) = app_entries(data, only="chat", image="chat:2")
    assert rolled.settings.image == "chat:2"


def test_applications_must_not_share_a_subnet_network_or_cookie() -> None:
    with pytest.raises(AppsError, match="overlapping subnets"):
        app_entries({"apps": {"a": {}, "b": {}}})  # both on the default subnet
    with pytest.raises(AppsError, match="share the network"):
        app_entries(
            {"apps": {"a": {"subnet": "10.1.0.0/24", "network": "n"},
                      "b": {"subnet": "10.2.0.0/24", "network": "n"}}}
        )  # fmt: skip
    with pytest.raises(AppsError, match="in each entry of `apps`"):
        app_entries(
            {"cookie_file": "c", "apps": {"a": {"subnet": "10.1.0.0/24"},
                                          "b": {"subnet": "10.2.0.0/24"}}}
        )  # fmt: skip
    with pytest.raises(
        AppsError, match=r"`app=nope`: no such application \(the inventory has: a\)"
    ):
        app_entries({"apps": {"a": {}}}, only="nope")


def test_entries_are_checked_like_the_top_level_keys() -> None:
    assert check_apps({"shop": {"replicas": 2, "subnet": "10.234.1.0/24"}}) is None
    problems = check_apps(
        {
            "shop": {"replica": 2, "replicas": "two", "subnet": "10.234.1.300/24"},
            "bad name!": {},
            "chat": "not a dict",
        }
    )
    assert problems is not None
    assert "`apps.shop`: unknown key `replica` (did you mean `replicas`?)" in problems
    assert "`apps.shop.replicas` must be a int" in problems
    assert "`apps.shop.subnet`:" in problems
    assert "application name 'bad name!'" in problems
    assert "`apps.chat` must be a dict of settings" in problems
    assert check_apps({}) is not None


def test_an_application_name_that_cannot_be_a_basename_needs_one() -> None:
    problems = check_apps({"shop.eu": {}, "chat.eu": {"basename": "chat"}})
    assert problems is not None
    assert "`apps.shop.eu`: the application name 'shop.eu' is also the nodes' basename" in problems
    assert "chat.eu" not in problems
