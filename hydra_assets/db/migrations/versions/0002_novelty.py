"""novelty score per inference, precision target and novel alarm per plot type, alarm kind

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('inferences', schema=None) as batch_op:
        batch_op.add_column(sa.Column('novelty', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('novelty_limit', sa.Float(), nullable=True))
    with op.batch_alter_table('plot_types', schema=None) as batch_op:
        batch_op.add_column(sa.Column('precision_target', sa.Float(), server_default='0.95', nullable=False))
        batch_op.add_column(sa.Column('novel_alarm', sa.Boolean(), server_default='0', nullable=False))
    with op.batch_alter_table('alarms', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), server_default='bad', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('alarms', schema=None) as batch_op:
        batch_op.drop_column('kind')
    with op.batch_alter_table('plot_types', schema=None) as batch_op:
        batch_op.drop_column('novel_alarm')
        batch_op.drop_column('precision_target')
    with op.batch_alter_table('inferences', schema=None) as batch_op:
        batch_op.drop_column('novelty_limit')
        batch_op.drop_column('novelty')
