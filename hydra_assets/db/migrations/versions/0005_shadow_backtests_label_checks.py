"""shadow inferences, backtests and label checks (the audit queue); a challenger flag per model version

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('backtests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('plot_type_id', sa.Integer(), nullable=False),
    sa.Column('candidate_model_id', sa.Integer(), nullable=False),
    sa.Column('active_model_id', sa.Integer(), nullable=True),
    sa.Column('first_run', sa.BigInteger(), nullable=False),
    sa.Column('last_run', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('requested_by', sa.String(length=128), nullable=False),
    sa.Column('requested_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.Column('n_images', sa.Integer(), nullable=False),
    sa.Column('report', sa.JSON(), nullable=False),
    sa.Column('mlflow_run_id', sa.String(length=64), nullable=False),
    sa.Column('dagster_backfill_id', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['active_model_id'], ['models.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['candidate_model_id'], ['models.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['plot_type_id'], ['plot_types.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('backtests', schema=None) as batch_op:
        batch_op.create_index('ix_backtests_candidate', ['candidate_model_id', 'requested_at'], unique=False)

    op.create_table('label_checks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('plot_type_id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('given_label_id', sa.Integer(), nullable=True),
    sa.Column('suggested_label_id', sa.Integer(), nullable=True),
    sa.Column('self_confidence', sa.Float(), nullable=False),
    sa.Column('is_issue', sa.Boolean(), nullable=False),
    sa.Column('rank', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('resolved_at', sa.DateTime(), nullable=True),
    sa.Column('resolved_by', sa.String(length=128), nullable=True),
    sa.Column('resolution', sa.String(length=16), nullable=True),
    sa.ForeignKeyConstraint(['given_label_id'], ['labels.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['plot_type_id'], ['plot_types.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['suggested_label_id'], ['labels.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('model_id', 'image_id', name='uq_label_check_model_image')
    )
    with op.batch_alter_table('label_checks', schema=None) as batch_op:
        batch_op.create_index('ix_label_checks_queue', ['plot_type_id', 'is_issue', 'resolved_at', 'rank'], unique=False)

    op.create_table('shadow_inferences',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('image_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('plot_type_id', sa.Integer(), nullable=False),
    sa.Column('run_number', sa.BigInteger(), nullable=False),
    sa.Column('chunk', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=True),
    sa.Column('model_key', sa.String(length=300), nullable=False),
    sa.Column('purpose', sa.String(length=16), nullable=False),
    sa.Column('backtest_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('weights', sa.JSON(), nullable=False),
    sa.Column('top_label_id', sa.Integer(), nullable=True),
    sa.Column('top_weight', sa.Float(), nullable=True),
    sa.Column('confirmed', sa.Boolean(), nullable=False),
    sa.Column('is_bad', sa.Boolean(), nullable=False),
    sa.Column('would_alarm', sa.Boolean(), nullable=False),
    sa.Column('novelty', sa.Float(), nullable=True),
    sa.Column('novelty_limit', sa.Float(), nullable=True),
    sa.Column('predict_ms', sa.Float(), nullable=True),
    sa.Column('classified_at', sa.DateTime(), nullable=False),
    sa.Column('dagster_run_id', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['backtest_id'], ['backtests.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['plot_type_id'], ['plot_types.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['top_label_id'], ['labels.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('image_id', 'model_key', 'purpose', name='uq_shadow_inference_image_model')
    )
    with op.batch_alter_table('shadow_inferences', schema=None) as batch_op:
        batch_op.create_index('ix_shadow_inferences_backtest', ['backtest_id', 'run_number'], unique=False)
        batch_op.create_index('ix_shadow_inferences_model_run', ['model_id', 'run_number'], unique=False)
        batch_op.create_index('ix_shadow_inferences_trend', ['plot_type_id', 'classified_at'], unique=False)

    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.add_column(sa.Column('challenger', sa.Boolean(), server_default='0', nullable=False))



def downgrade() -> None:
    # drop_table takes the tables' indexes along (MariaDB refuses to drop an index a foreign key uses first)
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.drop_column('challenger')

    op.drop_table('shadow_inferences')
    op.drop_table('label_checks')
    op.drop_table('backtests')
