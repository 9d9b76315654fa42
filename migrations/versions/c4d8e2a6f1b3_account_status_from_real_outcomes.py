"""Account status from real outcomes: the last test or delivery's result, and the last success
and last failure (when, the server's answer, the advice)

Existing accounts start untested (last_outcome_ok NULL): nothing has proven them under the new
rules yet.

Revision ID: c4d8e2a6f1b3
Revises: a7c3e1f09b12
Create Date: 2026-12-01 05:20:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c4d8e2a6f1b3'
down_revision = "a7c3e1f09b12"
branch_labels = None
depends_on = None

COLUMNS = (
    ('last_outcome_ok', sa.Boolean),
    ('last_success_at', sa.DateTime),
    ('last_success_answer', sa.Text),
    ('last_failure_at', sa.DateTime),
    ('last_failure_answer', sa.Text),
    ('last_failure_advice', sa.Text),
)


def upgrade():
    with op.batch_alter_table('email_accounts', schema=None) as batch_op:
        for name, kind in COLUMNS:
            batch_op.add_column(sa.Column(name, kind(), nullable=True))


def downgrade():
    with op.batch_alter_table('email_accounts', schema=None) as batch_op:
        for name, _kind in reversed(COLUMNS):
            batch_op.drop_column(name)
