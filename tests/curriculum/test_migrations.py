"""Data migrations run on stored rows: 0006 puts learner ids and concept keys in Unicode NFC, or refuses."""
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
