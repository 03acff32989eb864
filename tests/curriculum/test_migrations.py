"""Data migrations run on stored rows: 0006 puts learner ids and concept keys in Unicode NFC, or refuses; 0013 reversed
empties the learner states whose history lives in the column it drops."""
import unicodedata

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("curriculum", "0005_evaluation_protocol_and_version_description")]
AFTER = [("curriculum", "0006_ids_in_unicode_nfc")]
NFD = unicodedata.normalize("NFD", "José")
NFC = unicodedata.normalize("NFC", "José")


@pytest.fixture
def at_0005(transactional_db):
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    yield executor.loader.project_state(BEFORE).apps
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


def migrate_to_0006():
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(AFTER)


def test_ids_stored_decomposed_are_put_in_nfc(at_0005):
    Learner, Curriculum, Concept = (at_0005.get_model("curriculum", name) for name in ("Learner", "Curriculum", "Concept"))
    Learner.objects.create(external_id=NFD)
    Learner.objects.create(external_id="ana")
    curriculum = Curriculum.objects.create(key="demo", name="demo")
    Concept.objects.create(curriculum=curriculum, key=NFD + "-verb", position=0)

    migrate_to_0006()

    from curriculum.models import Concept as Now, Learner as LearnerNow
    assert sorted(LearnerNow.objects.values_list("external_id", flat=True)) == sorted([NFC, "ana"])
    assert list(Now.objects.values_list("key", flat=True)) == [NFC + "-verb"]


def test_two_stored_learners_that_are_one_in_nfc_are_refused_and_nothing_changes(at_0005):
    Learner = at_0005.get_model("curriculum", "Learner")
    Learner.objects.create(external_id=NFD)
    Learner.objects.create(external_id=NFC)

    with pytest.raises(RuntimeError, match=r"1 stored ids are one id in Unicode NFC.*learner 'José'.*Nothing was changed"):
        migrate_to_0006()

    assert sorted(Learner.objects.values_list("external_id", flat=True)) == sorted([NFD, NFC])
    Learner.objects.filter(external_id=NFD).delete()  # what the message asks an operator to do


def test_reversing_0013_empties_the_states_whose_history_lives_in_its_column(transactional_db, make_curriculum):
    """The code before 0013 reads a state's history from `data` only: going back, a state stored in today's form is
    emptied (rebuilt from the reviews when next read or written), one stored in the old form is kept as it is."""
    import datetime as dt

    from curriculum import serving
    from curriculum.models import LearnerState
    from curriculum.reviews.store import record_reviews
    from curriculum.selectors import serving_spec

    make_curriculum("demo", concepts=3)
    t0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.timezone.utc)
    record_reviews(items=[{"curriculum": "demo", "learner": learner, "concept": f"c{i % 3}", "correct": True,
                           "reviewed_at": (t0 + dt.timedelta(hours=i)).isoformat()}
                          for learner in ("new-form", "old-form") for i in range(4)])
    old = LearnerState.objects.get(learner__external_id="old-form")
    spec = serving_spec(curriculum_id=old.curriculum_id)
    whole = spec.dump(spec.load(old.data, old.history_states), last_review=tuple(old.data["last_review"]))
    LearnerState.objects.filter(pk=old.pk).update(data=whole, history_states=None)
    at = t0 + dt.timedelta(days=2)
    before = {learner: serving.recommend(curriculum="demo", learner=learner, at=at).scores
              for learner in ("new-form", "old-form")}

    executor = MigrationExecutor(connection)
    executor.migrate([("curriculum", "0012_fallback_rule")])
    apps = executor.loader.project_state([("curriculum", "0012_fallback_rule")]).apps
    rows = {row.learner.external_id: row.data
            for row in apps.get_model("curriculum", "LearnerState").objects.select_related("learner")}
    assert rows == {"new-form": {}, "old-form": whole}
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    # forward again: both answered as before (the emptied one from its reviews), and stored anew by the next review
    assert {learner: serving.recommend(curriculum="demo", learner=learner, at=at).scores
            for learner in ("new-form", "old-form")} == before
    record_reviews(items=[{"curriculum": "demo", "learner": "new-form", "concept": "c0", "correct": False,
                           "reviewed_at": (t0 + dt.timedelta(hours=5)).isoformat()}])
    row = LearnerState.objects.get(learner__external_id="new-form")
    assert row.review_count == 5 and row.history_states and row.data["state"]["steps"] == 5
