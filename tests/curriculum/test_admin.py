"""The admin: staff only, every model's pages render, policy versions are read-only."""
import datetime as dt
import unicodedata

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from curriculum import services
from curriculum.models import PolicyModel
from curriculum.reviews.store import record_reviews


@pytest.fixture
def staff_client(client, db):
    user = get_user_model().objects.create_user("staff", password="x", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="curriculum", codename__startswith="view_"))
    client.force_login(user)
    client.user = user
    return client


@pytest.mark.django_db
def test_admin_refuses_non_staff(client):
    user = get_user_model().objects.create_user("learner", password="x")
    client.force_login(user)
    response = client.get(reverse("admin:curriculum_reviewlog_changelist"))
    assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.django_db
@pytest.mark.parametrize("model", ["curriculum", "concept", "learner", "learnerstate", "reviewlog", "policymodel", "promotionevent"])
def test_every_changelist_renders_for_staff(admin_client, make_curriculum, make_policy, model):
    curriculum = make_curriculum()
    make_policy(curriculum)
    record_reviews(items=[{
        "curriculum": "demo", "learner": "u1", "concept": "c0", "correct": True,
        "reviewed_at": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    }])
    response = admin_client.get(reverse(f"admin:curriculum_{model}_changelist"))
    assert response.status_code == 200


@pytest.mark.django_db
def test_reviewlog_changelist_does_not_count_the_whole_table(admin_client, make_curriculum, django_assert_max_num_queries):
    make_curriculum()
    record_reviews(items=[{
        "curriculum": "demo", "learner": f"u{i}", "concept": "c0", "correct": True,
        "reviewed_at": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    } for i in range(5)])
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(reverse("admin:curriculum_reviewlog_changelist"))
    assert response.status_code == 200
    plain_counts = [q["sql"] for q in queries if q["sql"].upper().startswith("SELECT COUNT(*)") and "LIMIT" not in q["sql"].upper() and "curriculum_reviewlog" in q["sql"]]
    assert plain_counts == []


@pytest.mark.django_db
def test_policy_versions_are_read_only_and_artifacts_downloadable(admin_client, make_curriculum, make_policy):
    policy = make_policy(make_curriculum())
    change = admin_client.get(reverse("admin:curriculum_policymodel_change", args=[policy.pk]))
    assert change.status_code == 200
    assert b'name="status"' not in change.content  # nothing editable
    assert admin_client.post(reverse("admin:curriculum_policymodel_change", args=[policy.pk]), {"status": "active"}).status_code == 403
    url = reverse("curriculum:policy-artifact", args=[policy.pk, "dt_lite_config.json"])
    assert url.encode() in change.content
    download = admin_client.get(url)
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == b'{"tag": "demo-1"}'
    policy.refresh_from_db()
    assert policy.status == "candidate"


@pytest.mark.django_db
def test_promote_action_needs_the_promote_permission(staff_client, make_curriculum, make_policy):
    policy = make_policy(make_curriculum())
    url = reverse("admin:curriculum_policymodel_changelist")
    staff_client.post(url, {"action": "promote_selected", "_selected_action": [policy.pk]})
    policy.refresh_from_db()
    assert policy.status == "candidate"

    staff_client.user.user_permissions.add(Permission.objects.get(codename="promote_policymodel"))
    staff_client.post(url, {"action": "promote_selected", "_selected_action": [policy.pk]})
    policy.refresh_from_db()
    assert policy.status == "active"


@pytest.mark.django_db
def test_artifact_download_needs_view_permission(client, make_curriculum, make_policy):
    policy = make_policy(make_curriculum())
    user = get_user_model().objects.create_user("bare", password="x", is_staff=True)
    client.force_login(user)
    response = client.get(reverse("curriculum:policy-artifact", args=[policy.pk, "dt_model.pt"]))
    assert response.status_code == 403


@pytest.mark.django_db
def test_a_learner_page_on_a_large_deck_shows_the_recent_concepts_and_a_read_only_identity(admin_client, make_curriculum):
    import datetime as dt

    from django.utils import timezone

    from curriculum.admin import LearnerAdmin
    from curriculum.models import Learner, ReviewLog

    deck = make_curriculum("deck", concepts=30)
    learner = Learner.objects.create(external_id="1234567890123")
    now = timezone.now()
    concepts = list(deck.concepts.order_by("position"))
    for i, concept in enumerate(concepts[:20]):
        ReviewLog.objects.create(learner=learner, curriculum=deck, concept=concept, correct=True,
                                 reviewed_at=now - dt.timedelta(hours=40 - i), source="live")
    page = admin_client.get(f"/admin/curriculum/learner/{learner.pk}/change/").content.decode()
    hidden = 20 - LearnerAdmin.SHOWN_CONCEPTS
    assert f"{hidden} other reviewed concepts are hidden" in page
    assert 'name="external_id"' not in page  # the API's identity of the learner: not editable
    assert 'name="_save"' not in page and 'name="_continue"' not in page  # nothing to save on a view-only page
    recall_svg = page[page.index("Estimated recall per concept"):]
    assert recall_svg.count('class="series"') == LearnerAdmin.SHOWN_CONCEPTS
    assert concepts[19].key in recall_svg and f">{concepts[0].key}<" not in recall_svg  # the most recent kept


def _changelist_queries(client, url: str) -> list[str]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return [q["sql"] for q in queries]


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["", "?reviewed_at__gte=2025-12-01+00%3A00%3A00%2B00%3A00", "?source__exact=live"])
def test_the_reviewlog_changelist_makes_as_many_queries_for_100_rows_as_for_none(admin_client, make_curriculum, query):
    make_curriculum(concepts=5)
    url = reverse("admin:curriculum_reviewlog_changelist") + query
    empty = _changelist_queries(admin_client, url)
    record_reviews(items=[{
        "curriculum": "demo", "learner": f"u{i % 7}", "concept": f"c{i % 5}", "correct": True,
        "reviewed_at": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=i),
    } for i in range(100)])

    full = _changelist_queries(admin_client, url)
    page = admin_client.get(url).content.decode()

    assert len(full) == len(empty), "\n".join(full)
    assert page.count('class="field-concept_key"') == 100 and ">c4<" in page
    assert not [sql for sql in full if "DISTINCT" in sql.upper() and "reviewed_at" in sql]  # no date hierarchy


@pytest.mark.django_db
def test_a_version_page_shows_its_evaluation_per_student_family(admin_client, make_curriculum, make_policy):
    from training.rl.evaluation import family_block
    import numpy as np

    policy = make_policy(make_curriculum(), recall=0.7)
    values = {"dt": np.array([0.6, 0.7, 0.8]), "lowest_recall": np.array([0.5, 0.6, 0.6]),
              "oracle": np.array([0.5, 0.55, 0.6]), "target_recall": np.array([0.55, 0.7, 0.75])}
    policy.metrics = {**policy.metrics, "families": {"actr": family_block(values, references=("target_recall",))}}
    policy.save(update_fields=["metrics"])
    page = admin_client.get(reverse("admin:curriculum_policymodel_change", args=[policy.pk])).content.decode()
    assert "crl-families" in page and "<td>actr</td>" in page
    assert "(best behaviour)" in page and "0.1333" in page  # dt - lowest_recall, paired
    assert "n/a (the oracle is no ceiling here)" in page


@pytest.mark.django_db
def test_a_learner_page_counts_every_review_and_concept_from_the_database(admin_client, make_curriculum, monkeypatch):
    """The window the page replays (MAX_REVIEWS newest reviews) is not the learner's history: the counts and the
    number of hidden concepts come from the database."""
    import datetime as dt

    from django.utils import timezone

    from curriculum import learner_history
    from curriculum.admin import LearnerAdmin
    from curriculum.models import Learner, ReviewLog

    monkeypatch.setattr(learner_history, "MAX_REVIEWS", 30)
    deck = make_curriculum("deck", concepts=40)
    learner = Learner.objects.create(external_id="l-6220")
    now = timezone.now()
    concepts = list(deck.concepts.order_by("position"))
    # 40 older reviews of concepts 0-39, then 30 newer ones of concepts 0-14 only (the replayed window).
    rows = [(concepts[i], now - dt.timedelta(days=10, minutes=i)) for i in range(40)]
    rows += [(concepts[i % 15], now - dt.timedelta(hours=30 - i)) for i in range(30)]
    ReviewLog.objects.bulk_create([ReviewLog(learner=learner, curriculum=deck, concept=c, correct=True,
                                             reviewed_at=at, source="live") for c, at in rows])
    page = admin_client.get(f"/admin/curriculum/learner/{learner.pk}/change/").content.decode()
    assert "70 reviews of 40 concepts." in page
    assert f"{40 - LearnerAdmin.SHOWN_CONCEPTS} other reviewed concepts are hidden" in page
    assert "The 30 newest reviews are shown (40 older ones left out)." in page


# ------------------------------------------------------------------ the review log's search (issue 25, items 6 and 9)
COMPOSED = unicodedata.normalize("NFC", "José")  # é as one code point
DECOMPOSED = unicodedata.normalize("NFD", "José")  # e + U+0301, as macOS may send it


def _search(client, model, term):
    """(the changelist's rows as text, the SQL of the queries that read ``model``'s table)."""
    url = reverse(f"admin:curriculum_{model}_changelist")
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, {"q": term})
    assert response.status_code == 200
    return response.content.decode(), [q["sql"] for q in queries if f'FROM "curriculum_{model}"' in q["sql"]]


@pytest.fixture
def searchable(make_curriculum):
    make_curriculum(concepts=3)
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    record_reviews(items=[{"curriculum": "demo", "learner": learner, "concept": f"c{i % 3}", "correct": True,
                           "reviewed_at": t0 + dt.timedelta(minutes=i)}
                          for learner in (COMPOSED, "ana", "bo") for i in range(4)], batch="import-7")
    record_reviews(items=[{"curriculum": "demo", "learner": "bo", "concept": "c2", "correct": False,
                           "reviewed_at": t0 + dt.timedelta(days=1), "idempotency_key": "Key-1"}])


@pytest.mark.django_db
@pytest.mark.parametrize("term, rows", [
    (DECOMPOSED, 4), (COMPOSED, 4), (f'"{DECOMPOSED}"', 4), ("ANA", 4),  # one learner however encoded; case as before
    ("c2", 4), ("import-7", 12), ("Key-1", 1),  # a concept key, a batch, an idempotency key
    ("key-1", 0), ("IMPORT-7", 0), ("nobody", 0),  # batch and idempotency key exactly (their indexes)
    ("ana c1", 1),  # every term must match: ana's reviews of c1
])
def test_the_review_search_finds_by_each_field_and_reads_the_review_table_by_ids(admin_client, searchable, term, rows):
    page, sql = _search(admin_client, "reviewlog", term)

    assert page.count('class="field-concept_key"') == rows
    # the reviews are filtered by their own indexed columns, never by a joined table's column nor through UPPER()
    # (no index serves those: PostgreSQL scanned every review, 5.6 s for one learner at 10M, bench/review_admin.py)
    wheres = [q.split(" WHERE ", 1)[1] for q in sql if " WHERE " in q]
    assert wheres and not [w for w in wheres if '"curriculum_learner"' in w or '"curriculum_concept"' in w
                           or "UPPER(" in w.upper() or " LIKE " in w.upper()], "\n".join(sql)


@pytest.mark.django_db
@pytest.mark.parametrize("model", ["learner", "learnerstate"])
def test_a_learner_searched_by_a_decomposed_name_is_found(admin_client, searchable, model):
    page, _ = _search(admin_client, model, DECOMPOSED)

    assert COMPOSED in page and "0 results" not in page and "ana" not in page.split("result-list")[-1]
