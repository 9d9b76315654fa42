"""archive email accounts instead of deleting their history

Sends and messages refer to the account they went through, so removing an account archives it;
only live accounts count towards "one single account for all operators".

Revision ID: 557be74a1a41
Revises: d0bb93653e20
Create Date: 2026-11-29 09:53:58.541147

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '557be74a1a41'
down_revision = 'd0bb93653e20'
branch_labels = None
depends_on = None


def _one_system_index(batch_op, where: str) -> None:
    batch_op.create_index(
        'uq_email_accounts_one_system',
        ['kind'],
        unique=True,
        sqlite_where=sa.text(where),
        postgresql_where=sa.text(where),
    )


def upgrade():
    with op.batch_alter_table('email_accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('archived_at', sa.DateTime(), nullable=True))
        batch_op.drop_index('uq_email_accounts_one_system')
        _one_system_index(batch_op, "kind = 'system' AND archived_at IS NULL")


def downgrade():
    # Fails while archived single accounts exist: the stricter index cannot hold them.
    with op.batch_alter_table('email_accounts', schema=None) as batch_op:
        batch_op.drop_index('uq_email_accounts_one_system')
        batch_op.drop_column('archived_at')
        _one_system_index(batch_op, "kind = 'system'")
