import pytest

from kat_scheduler.config import SettingsError, load_settings
from kat_scheduler.models import BoefjeTask, NormalizerTask, Plugin, ScanProfileMutation
from tests.factories.tasks import normalizer_task


def test_settings_read_openkat_variable_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEDULER_PQ_GRACE_PERIOD", "3600")
    monkeypatch.setenv("KATALOGUS_API", "http://katalogus:8000")
    monkeypatch.setenv("SCHEDULER_REDIS_URL", "redis://cache:6379/2")
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    settings = load_settings()
    assert settings.grace_period == 3600 and settings.katalogus_api == "http://katalogus:8000"
    assert settings.celery_broker_url == "redis://cache:6379/2"  # the broker defaults to our Redis
    monkeypatch.setenv("CELERY_BROKER_URL", "amqp://rabbit//")
    assert load_settings().celery_broker_url == "amqp://rabbit//"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("SCHEDULER_PQ_GRACE_PERIOD", "soon", "valid integer"),
        ("SCHEDULER_API_PORT", "70000", "less than or equal to 65535"),
        ("SCHEDULER_LOGGING_FORMAT", "xml", "'text' or 'json'"),
    ],
)
def test_a_bad_setting_names_the_variable_and_what_it_expected(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert variable in str(error.value) and expected in str(error.value) and repr(value) in str(error.value)


def test_work_identities_follow_the_contract() -> None:
    with_ooi = BoefjeTask(boefje={"id": "nmap"}, input_ooi="IPAddressV4|internet|192.0.2.1", organization="o")
    without = BoefjeTask(boefje={"id": "nmap"}, organization="o")
    assert with_ooi.identity == ("IPAddressV4|internet|192.0.2.1", "nmap", "o")
    assert without.identity == (None, "nmap", "o")
    normalizer: NormalizerTask = normalizer_task(org="o")
    assert normalizer.identity == ("kat_dns_normalize", normalizer.raw_data.boefje_meta.id, "o")
    hashes = {with_ooi.hash, without.hash, normalizer.hash}
    assert len(hashes) == 3 and all(len(h) == 32 and int(h, 16) >= 0 for h in hashes)
    again = BoefjeTask(boefje={"id": "nmap"}, input_ooi="IPAddressV4|internet|192.0.2.1", organization="o")
    assert again.hash == with_ooi.hash and again.id != with_ooi.id


def test_identities_whose_parts_hold_the_separator_do_not_collide() -> None:
    """OpenKAT's "-"-joined string is the same for these two; the work is not."""
    ooi = "Hostname|internet|example.com"
    corp = BoefjeTask(boefje={"id": "nmap-udp"}, input_ooi=ooi, organization="corp")
    udp_corp = BoefjeTask(boefje={"id": "nmap"}, input_ooi=ooi, organization="udp-corp")
    assert f"{ooi}-nmap-udp-corp" == f"{ooi}-{corp.boefje.id}-{corp.organization}"
    assert corp.hash != udp_corp.hash


def test_plugins_accept_katalogus_shapes_and_ignore_extra_fields() -> None:
    normalizer = Plugin.model_validate(
        {"id": "kat_dns_normalize", "type": "normalizer", "consumes": "boefje/dns-records", "new": 1}
    )
    assert normalizer.consumes == ["boefje/dns-records"]
    boefje = Plugin.model_validate({"id": "dns", "type": "boefje", "scan_level": None, "consumes": ["Hostname"]})
    assert boefje.scan_level == 1 and boefje.enabled is False


def test_a_delete_mutation_carries_no_value() -> None:
    event = ScanProfileMutation.model_validate(
        {"operation": "delete", "primary_key": "Hostname|internet|x", "value": None, "client_id": "org1"}
    )
    assert event.value is None and event.primary_key == "Hostname|internet|x"


def test_a_cluster_redis_needs_its_own_celery_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEDULER_REDIS_URL", "redis+cluster://127.0.0.1:7000,127.0.0.1:7001")
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    with pytest.raises(SettingsError, match="CELERY_BROKER_URL must be set"):
        load_settings()
    monkeypatch.setenv("CELERY_BROKER_URL", "amqp://rabbit//")
    assert load_settings().celery_broker_url == "amqp://rabbit//"
