"""reference sets, scores and masks; run flags, sign-offs, notifications

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('flag_rules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('group_name', sa.String(length=128), nullable=False),
    sa.Column('rule', sa.String(length=32), nullable=False),
    sa.Column('bad_share', sa.Float(), nullable=False),
    sa.Column('medium_share', sa.Float(), nullable=False),
    sa.Column('consecutive', sa.Integer(), nullable=False),
    sa.Column('ignore_labels', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('updated_by', sa.String(length=128), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('scope', 'group_name', name='uq_flag_rule_group')
    )
    op.create_table('flag_signoffs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('run_number', sa.BigInteger(), nullable=False),
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('group_name', sa.String(length=128), nullable=False),
    sa.Column('first_chunk', sa.Integer(), nullable=True),
    sa.Column('last_chunk', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('previous_flag', sa.String(length=8), nullable=True),
    sa.Column('flag', sa.String(length=8), nullable=False),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('user_name', sa.String(length=128), nullable=False),
    sa.Column('signed_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('flag_signoffs', schema=None) as batch_op:
        batch_op.create_index('ix_flag_signoffs_run', ['run_number', 'scope', 'group_name', 'signed_at'], unique=False)

    op.create_table('notification_targets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('group_name', sa.String(length=128), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('address', sa.String(length=1024), nullable=False),
    sa.Column('events', sa.String(length=64), nullable=False),
    sa.Column('min_interval_s', sa.Integer(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('run_flags',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('run_number', sa.BigInteger(), nullable=False),
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('group_name', sa.String(length=128), nullable=False),
    sa.Column('first_chunk', sa.Integer(), nullable=False),
    sa.Column('last_chunk', sa.Integer(), nullable=False),
    sa.Column('flag', sa.String(length=8), nullable=False),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('computed_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('run_flags', schema=None) as batch_op:
        batch_op.create_index('ix_run_flags_run', ['run_number', 'scope', 'group_name', 'first_chunk'], unique=False)

    op.create_table('notifications',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('target_id', sa.Integer(), nullable=False),
    sa.Column('event', sa.String(length=16), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['target_id'], ['notification_targets.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.create_index('ix_notifications_pending', ['target_id', 'sent_at', 'created_at'], unique=False)

    op.create_table('plot_type_masks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('plot_type_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('regions', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['plot_type_id'], ['plot_types.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('plot_type_id', 'version', name='uq_plot_type_mask_version')
    )
    op.create_table('reference_sets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('plot_type_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('runs', sa.JSON(), nullable=False),
    sa.Column('rule', sa.String(length=16), nullable=False),
    sa.Column('method', sa.String(length=32), nullable=False),
    sa.Column('chosen_by', sa.String(length=128), nullable=False),
    sa.Column('chosen_at', sa.DateTime(), nullable=False),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('n_images', sa.Integer(), nullable=False),
    sa.Column('image_height', sa.Integer(), nullable=True),
    sa.Column('image_width', sa.Integer(), nullable=True),
    sa.Column('quantile', sa.Float(), nullable=False),
    sa.Column('score_limit', sa.Float(), nullable=True),
    sa.Column('mask_id', sa.Integer(), nullable=True),
    sa.Column('artifact_path', sa.String(length=1024), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['mask_id'], ['plot_type_masks.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['plot_type_id'], ['plot_types.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('plot_type_id', 'version', name='uq_reference_set_version')
    )
    with op.batch_alter_table('reference_sets', schema=None) as batch_op:
        batch_op.create_index('ix_reference_sets_active', ['plot_type_id', 'active'], unique=False)

    op.create_table('reference_scores',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('image_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('plot_type_id', sa.Integer(), nullable=False),
    sa.Column('run_number', sa.BigInteger(), nullable=False),
    sa.Column('chunk', sa.Integer(), nullable=False),
    sa.Column('reference_id', sa.Integer(), nullable=True),
    sa.Column('reference_version', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('score', sa.Float(), nullable=True),
    sa.Column('score_limit', sa.Float(), nullable=True),
    sa.Column('flagged', sa.Boolean(), nullable=False),
    sa.Column('score_ms', sa.Float(), nullable=True),
    sa.Column('computed_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['plot_type_id'], ['plot_types.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['reference_id'], ['reference_sets.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('image_id', 'reference_version', name='uq_reference_score_image_version')
    )
    with op.batch_alter_table('reference_scores', schema=None) as batch_op:
        batch_op.create_index('ix_reference_scores_flagged', ['flagged', 'computed_at'], unique=False)
        batch_op.create_index('ix_reference_scores_run', ['run_number', 'plot_type_id'], unique=False)
        batch_op.create_index('ix_reference_scores_trend', ['plot_type_id', 'computed_at'], unique=False)

    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mask_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_models_mask_id', 'plot_type_masks', ['mask_id'], ['id'], ondelete='SET NULL')

    with op.batch_alter_table('plot_types', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reference_alarm', sa.Boolean(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('reference_quantile', sa.Float(), server_default='0.99', nullable=False))
        batch_op.add_column(sa.Column('reference_rule', sa.String(length=16), server_default='auto', nullable=False))

    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('started_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('ended_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('chunk_count', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('alarm_count', sa.Integer(), server_default='0', nullable=False))



def downgrade() -> None:
    # drop_table takes the tables' indexes along (MariaDB refuses to drop an index a foreign key uses first)
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('alarm_count')
        batch_op.drop_column('chunk_count')
        batch_op.drop_column('ended_at')
        batch_op.drop_column('started_at')

    with op.batch_alter_table('plot_types', schema=None) as batch_op:
        batch_op.drop_column('reference_rule')
        batch_op.drop_column('reference_quantile')
        batch_op.drop_column('reference_alarm')

    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.drop_constraint('fk_models_mask_id', type_='foreignkey')
        batch_op.drop_column('mask_id')

    op.drop_table('reference_scores')
    op.drop_table('reference_sets')
    op.drop_table('plot_type_masks')
    op.drop_table('notifications')
    op.drop_table('run_flags')
    op.drop_table('notification_targets')
    op.drop_table('flag_signoffs')
    op.drop_table('flag_rules')
