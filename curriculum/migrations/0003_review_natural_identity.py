"""A review's identity (learner, concept, time to the millisecond, outcome) enforced by the database.

Existing rows are made to fit first: times are truncated to the millisecond (as every route now keeps them), then
of each group of rows with one identity the oldest (lowest id) is kept and the others deleted; the serving
state of each learner who lost a row is emptied, so it is rebuilt from the history on its next use.
"""

import django.db.models.functions.comparison
from django.db import migrations, models


def _fit_existing_rows(apps, schema_editor):
    table = apps.get_model("curriculum", "ReviewLog")._meta.db_table
    states = apps.get_model("curriculum", "LearnerState")._meta.db_table
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        truncate = (f"UPDATE {table} SET reviewed_at = date_trunc('milliseconds', reviewed_at) "
                    "WHERE reviewed_at <> date_trunc('milliseconds', reviewed_at)")
    elif vendor == "sqlite":  # Django's SQLite date-times are text 'YYYY-MM-DD HH:MM:SS[.ffffff]'
        truncate = (f"UPDATE {table} SET reviewed_at = substr(reviewed_at, 1, 23) || '000' "
                    "WHERE length(reviewed_at) = 26 AND substr(reviewed_at, 24, 3) <> '000'")
    else:
        raise NotImplementedError(f"no migration of review times for {vendor}")
    extra = (
        f"SELECT id, learner_id, ROW_NUMBER() OVER (PARTITION BY learner_id, concept_id, reviewed_at, correct, "
        f"COALESCE(grade, 0) ORDER BY id) AS n FROM {table}"
    )
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(truncate)
        cursor.execute(f"UPDATE {states} SET data = '{{}}' WHERE learner_id IN (SELECT learner_id FROM ({extra}) x WHERE n > 1)")
        cursor.execute(f"DELETE FROM {table} WHERE id IN (SELECT id FROM ({extra}) x WHERE n > 1)")


class Migration(migrations.Migration):

    dependencies = [
        ('curriculum', '0002_reviewlog_drop_redundant_indexes'),
    ]

    operations = [
        migrations.RunPython(_fit_existing_rows, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name='reviewlog',
            constraint=models.UniqueConstraint(models.F('learner'), models.F('concept'), models.F('reviewed_at'), models.F('correct'), django.db.models.functions.comparison.Coalesce(models.F('grade'), models.Value(0)), name='review_natural_identity'),
        ),
    ]
