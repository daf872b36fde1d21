from django.conf import settings
from django.db import migrations, models

from atelier_platform.db.operations import AddIndexOnline


class Migration(migrations.Migration):
    # Not in a transaction: PostgreSQL builds each index CONCURRENTLY (AddIndexOnline), so that jobs go on being
    # submitted and finished while the big tables' indexes are built during a deploy.
    atomic = False

    dependencies = [
        ('accounts', '0005_invitation_invited_by_key'),
        ('catalog', '0003_modelversion_project'),
        ('jobs', '0011_search_trigram_indexes'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        AddIndexOnline(
            model_name='job',
            index=models.Index(condition=models.Q(('purpose', 'evaluation')), fields=['project', '-created_at'], name='job_project_evaluations'),
        ),
        AddIndexOnline(
            model_name='output',
            index=models.Index(fields=['-created_at', '-id'], name='output_newest'),
        ),
    ]
