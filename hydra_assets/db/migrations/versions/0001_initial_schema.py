"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-22
"""
import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('user_name', sa.String(length=128), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('allowed', sa.Boolean(), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index('ix_audit_log_time', ['at'], unique=False)

    op.create_table('heartbeats',
    sa.Column('stage', sa.String(length=32), nullable=False),
    sa.Column('beat_at', sa.DateTime(), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('stage')
    )
    op.create_table('news',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('news', schema=None) as batch_op:
        batch_op.create_index('ix_news_created', ['active', 'created_at'], unique=False)

    op.create_table('plot_types',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('topology', sa.String(length=64), nullable=False),
    sa.Column('input_height', sa.Integer(), nullable=False),
    sa.Column('input_width', sa.Integer(), nullable=False),
    sa.Column('collect_percent', sa.Float(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('roles',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('runs',
    sa.Column('number', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('first_seen', sa.DateTime(), nullable=False),
    sa.Column('last_seen', sa.DateTime(), nullable=False),
    sa.Column('conditions', sa.JSON(), nullable=False),
    sa.Column('image_count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('number')
    )
    op.create_table('super_groups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('labels',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('plot_type_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('colour', sa.String(length=32), nullable=False),
    sa.Column('sort_order', sa.Integer(), nullable=False),
    sa.Column('is_bad', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['plot_type_id'], ['plot_types.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('plot_type_id', 'name', name='uq_label_plot_type_name')
    )
    op.create_table('plot_groups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('super_group_id', sa.Integer(), nullable=True),
    sa.Column('description', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['super_group_id'], ['super_groups.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('stage_timings',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('stage', sa.String(length=32), nullable=False),
    sa.Column('plot_type_id', sa.Integer(), nullable=True),
    sa.Column('run_number', sa.BigInteger(), nullable=False),
    sa.Column('chunk', sa.Integer(), nullable=True),
    sa.Column('image_count', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=False),
    sa.Column('duration_ms', sa.Float(), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('dagster_run_id', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['plot_type_id'], ['plot_types.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('stage_timings', schema=None) as batch_op:
        batch_op.create_index('ix_stage_timings_stage_time', ['stage', 'finished_at'], unique=False)

    op.create_table('training_sets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('plot_type_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('sampling', sa.String(length=32), nullable=False),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('n_train', sa.Integer(), nullable=False),
    sa.Column('n_validation', sa.Integer(), nullable=False),
    sa.Column('label_counts', sa.JSON(), nullable=False),
    sa.Column('dagster_run_id', sa.String(length=64), nullable=False),
    sa.Column('mlflow_run_id', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['plot_type_id'], ['plot_types.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('full_name', sa.String(length=256), nullable=False),
    sa.Column('email', sa.String(length=256), nullable=False),
    sa.Column('role_id', sa.Integer(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['role_id'], ['roles.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('images',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('plot_type_id', sa.Integer(), nullable=True),
    sa.Column('run_number', sa.BigInteger(), nullable=True),
    sa.Column('chunk', sa.Integer(), nullable=True),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('file_name', sa.String(length=512), nullable=False),
    sa.Column('stored_path', sa.String(length=1024), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=True),
    sa.Column('height', sa.Integer(), nullable=True),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('quarantine_reason', sa.Text(), nullable=True),
    sa.Column('label_id', sa.Integer(), nullable=True),
    sa.Column('labeled_at', sa.DateTime(), nullable=True),
    sa.Column('labeled_by', sa.Integer(), nullable=True),
    sa.Column('queue_priority', sa.SmallInteger(), nullable=True),
    sa.ForeignKeyConstraint(['label_id'], ['labels.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['labeled_by'], ['users.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['plot_type_id'], ['plot_types.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('plot_type_id', 'run_number', 'chunk', 'digest', name='uq_image_identity')
    )
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.create_index('ix_images_browser_run', ['plot_type_id', 'run_number', 'chunk'], unique=False)
        batch_op.create_index('ix_images_digest', ['digest'], unique=False)
        batch_op.create_index('ix_images_editor', ['plot_type_id', 'label_id', 'labeled_at'], unique=False)
        batch_op.create_index('ix_images_labeler_queue', ['plot_type_id', 'label_id', 'queue_priority', 'id'], unique=False)
        batch_op.create_index('ix_images_received', ['received_at'], unique=False)
        batch_op.create_index('ix_images_run', ['run_number'], unique=False)
        batch_op.create_index('ix_images_status', ['status', 'received_at'], unique=False)

    op.create_table('models',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('plot_type_id', sa.Integer(), nullable=False),
    sa.Column('mlflow_name', sa.String(length=256), nullable=False),
    sa.Column('mlflow_version', sa.String(length=32), nullable=False),
    sa.Column('mlflow_run_id', sa.String(length=64), nullable=False),
    sa.Column('model_uri', sa.String(length=1024), nullable=False),
    sa.Column('topology', sa.String(length=64), nullable=False),
    sa.Column('input_height', sa.Integer(), nullable=False),
    sa.Column('input_width', sa.Integer(), nullable=False),
    sa.Column('input_channels', sa.Integer(), nullable=False),
    sa.Column('label_names', sa.JSON(), nullable=False),
    sa.Column('training_set_id', sa.Integer(), nullable=True),
    sa.Column('training_set_size', sa.Integer(), nullable=False),
    sa.Column('sampling', sa.String(length=32), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('activated_at', sa.DateTime(), nullable=True),
    sa.Column('activated_by', sa.String(length=128), nullable=False),
    sa.ForeignKeyConstraint(['plot_type_id'], ['plot_types.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['training_set_id'], ['training_sets.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('mlflow_name', 'mlflow_version', name='uq_model_version')
    )
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.create_index('ix_models_plot_type_active', ['plot_type_id', 'active'], unique=False)

    op.create_table('permissions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('role_id', sa.Integer(), nullable=True),
    sa.Column('plot_type_id', sa.Integer(), nullable=True),
    sa.Column('permission', sa.String(length=32), nullable=False),
    sa.Column('granted_at', sa.DateTime(), nullable=False),
    sa.Column('granted_by', sa.String(length=128), nullable=False),
    sa.ForeignKeyConstraint(['plot_type_id'], ['plot_types.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['role_id'], ['roles.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('user_id', 'role_id', 'plot_type_id', 'permission', name='uq_permission_grant')
    )
    with op.batch_alter_table('permissions', schema=None) as batch_op:
        batch_op.create_index('ix_permissions_role', ['role_id'], unique=False)
        batch_op.create_index('ix_permissions_user', ['user_id'], unique=False)

    op.create_table('plot_type_groupings',
    sa.Column('plot_group_id', sa.Integer(), nullable=False),
    sa.Column('plot_type_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['plot_group_id'], ['plot_groups.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['plot_type_id'], ['plot_types.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('plot_group_id', 'plot_type_id')
    )
    op.create_table('inferences',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('image_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('plot_type_id', sa.Integer(), nullable=False),
    sa.Column('run_number', sa.BigInteger(), nullable=False),
    sa.Column('chunk', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=True),
    sa.Column('model_key', sa.String(length=300), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('weights', sa.JSON(), nullable=False),
    sa.Column('top_label_id', sa.Integer(), nullable=True),
    sa.Column('top_weight', sa.Float(), nullable=True),
    sa.Column('confirmed', sa.Boolean(), nullable=False),
    sa.Column('is_bad', sa.Boolean(), nullable=False),
    sa.Column('flagged', sa.Boolean(), nullable=False),
    sa.Column('gradcam_path', sa.String(length=1024), nullable=True),
    sa.Column('classified_at', sa.DateTime(), nullable=False),
    sa.Column('feed_ms', sa.Float(), nullable=True),
    sa.Column('predict_ms', sa.Float(), nullable=True),
    sa.Column('keep_ms', sa.Float(), nullable=True),
    sa.Column('dagster_run_id', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['plot_type_id'], ['plot_types.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['top_label_id'], ['labels.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('image_id', 'model_key', name='uq_inference_image_model')
    )
    with op.batch_alter_table('inferences', schema=None) as batch_op:
        batch_op.create_index('ix_inferences_log', ['flagged', 'classified_at'], unique=False)
        batch_op.create_index('ix_inferences_run', ['run_number', 'plot_type_id'], unique=False)
        batch_op.create_index('ix_inferences_trend', ['plot_type_id', 'classified_at'], unique=False)

    op.create_table('label_history',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('image_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('label_id', sa.Integer(), nullable=True),
    sa.Column('previous_label_id', sa.Integer(), nullable=True),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('labeled_at', sa.DateTime(), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['label_id'], ['labels.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['previous_label_id'], ['labels.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('label_history', schema=None) as batch_op:
        batch_op.create_index('ix_label_history_image', ['image_id', 'labeled_at'], unique=False)

    op.create_table('threshold_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('label_id', sa.Integer(), nullable=False),
    sa.Column('old_value', sa.Float(), nullable=True),
    sa.Column('new_value', sa.Float(), nullable=False),
    sa.Column('changed_at', sa.DateTime(), nullable=False),
    sa.Column('changed_by', sa.String(length=128), nullable=False),
    sa.ForeignKeyConstraint(['label_id'], ['labels.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('threshold_changes', schema=None) as batch_op:
        batch_op.create_index('ix_threshold_changes_model', ['model_id', 'changed_at'], unique=False)

    op.create_table('thresholds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('label_id', sa.Integer(), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('f1', sa.Float(), nullable=True),
    sa.Column('changed_at', sa.DateTime(), nullable=False),
    sa.Column('changed_by', sa.String(length=128), nullable=False),
    sa.ForeignKeyConstraint(['label_id'], ['labels.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('model_id', 'label_id', name='uq_threshold_model_label')
    )
    op.create_table('training_reports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('mlflow_run_id', sa.String(length=64), nullable=False),
    sa.Column('n_images', sa.Integer(), nullable=False),
    sa.Column('n_disagreements', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('training_set_items',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('training_set_id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('label_id', sa.Integer(), nullable=False),
    sa.Column('split', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['label_id'], ['labels.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['training_set_id'], ['training_sets.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('training_set_id', 'image_id', name='uq_training_set_image')
    )
    op.create_table('alarms',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('inference_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('image_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('plot_type_id', sa.Integer(), nullable=False),
    sa.Column('label_id', sa.Integer(), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('raised_at', sa.DateTime(), nullable=False),
    sa.Column('acknowledged_by', sa.String(length=128), nullable=True),
    sa.Column('acknowledged_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['inference_id'], ['inferences.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['label_id'], ['labels.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['plot_type_id'], ['plot_types.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('inference_id')
    )
    with op.batch_alter_table('alarms', schema=None) as batch_op:
        batch_op.create_index('ix_alarms_raised', ['raised_at'], unique=False)

    op.create_table('keep_decisions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('inference_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('image_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('keep', sa.Boolean(), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=True),
    sa.Column('kept_path', sa.String(length=1024), nullable=True),
    sa.Column('decided_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['inference_id'], ['inferences.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('inference_id')
    )
    with op.batch_alter_table('keep_decisions', schema=None) as batch_op:
        batch_op.create_index('ix_keep_decisions_image', ['image_id'], unique=False)

    op.create_table('run_time',
    sa.Column('plot_type_id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('inference_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('run_number', sa.BigInteger(), nullable=False),
    sa.Column('chunk', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['inference_id'], ['inferences.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['plot_type_id'], ['plot_types.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('plot_type_id')
    )
    op.create_table('training_report_items',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('report_id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('split', sa.String(length=16), nullable=False),
    sa.Column('human_label_id', sa.Integer(), nullable=True),
    sa.Column('model_label_id', sa.Integer(), nullable=True),
    sa.Column('model_weight', sa.Float(), nullable=False),
    sa.Column('weights', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['human_label_id'], ['labels.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['model_label_id'], ['labels.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['report_id'], ['training_reports.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('training_report_items', schema=None) as batch_op:
        batch_op.create_index('ix_training_report_items_report', ['report_id'], unique=False)



def downgrade() -> None:
    # Dropping a table drops its indexes; children before parents for the foreign keys.
    op.drop_table('training_report_items')
    op.drop_table('run_time')
    op.drop_table('keep_decisions')
    op.drop_table('alarms')
    op.drop_table('training_set_items')
    op.drop_table('training_reports')
    op.drop_table('thresholds')
    op.drop_table('threshold_changes')
    op.drop_table('label_history')
    op.drop_table('inferences')
    op.drop_table('plot_type_groupings')
    op.drop_table('permissions')
    op.drop_table('models')
    op.drop_table('images')
    op.drop_table('users')
    op.drop_table('training_sets')
    op.drop_table('stage_timings')
    op.drop_table('plot_groups')
    op.drop_table('labels')
    op.drop_table('super_groups')
    op.drop_table('runs')
    op.drop_table('roles')
    op.drop_table('plot_types')
    op.drop_table('news')
    op.drop_table('heartbeats')
    op.drop_table('audit_log')
