"""/metrics in Prometheus text format: requests, latency, analysis time, cache outcomes, queue, workers, limits."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import create_key
from tests.test_api_analyze import post_audio


def _samples(response) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_count_requests_cache_outcomes_and_analysis_time(client, song_120_a_minor):
    post_audio(client, song_120_a_minor)
    post_audio(client, song_120_a_minor)
    client.get("/no/such/path/12345")   # unmatched: one bounded label, never the raw path
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = _samples(response)
    assert samples[("essentia_cache_lookups_total", (("outcome", "hit"),))] == 1
    assert samples[("essentia_cache_lookups_total", (("outcome", "miss"),))] == 1
    assert samples[("essentia_analysis_duration_seconds_count", ())] == 1
    ok = (("endpoint", "/analyze_data"), ("method", "POST"), ("status", "200"))
    assert samples[("essentia_http_requests_total", ok)] == 2
    assert samples[("essentia_http_request_duration_seconds_count", (("endpoint", "/analyze_data"),))] == 2
    unmatched = (("endpoint", "unmatched"), ("method", "GET"), ("status", "404"))
    assert samples[("essentia_http_requests_total", unmatched)] == 1
    assert not any("12345" in str(labels) for _, labels in samples)
    assert samples[("essentia_analysis_queue_depth", ())] == 0
    assert samples[("essentia_analysis_workers_alive", ())] >= 1


def test_metrics_count_rate_limit_rejections_and_need_an_admin_key_in_production(make_app):
    app = make_app(production=True, rate_limit=2)
    user, admin = create_key(app, "user"), create_key(app, "ops", "--admin")
    client = app.test_client()
    for _ in range(3):
        client.get("/stats", headers={"X-API-Key": user})
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"X-API-Key": user}).status_code in (403, 429)
    response = client.get("/metrics", headers={"X-API-Key": admin})
    assert response.status_code == 200
    assert _samples(response)[("essentia_rate_limit_rejections_total", ())] >= 1
