# The worker process: visible in pg_stat_activity, survives bad rows, a
# dropped extension and SIGTERM with requests in flight (an interrupted send
# becomes 'unknown' and is never sent again), and never runs on a standby.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/lib";
use CobaltTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $mock = start_mock();
my $node = cobalt_node('worker', $mock, init => { allows_streaming => 1 },
	conf => "cobalt.request_timeout = '60s'\n");

sub worker_pid
{
	return $node->safe_psql('app',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'cobalt worker'");
}

# job-creating requests the mock received with this _mock key
sub posts_for { return post_counts($mock)->{ $_[0] } // 0; }

ok(wait_until(sub { worker_pid() ne '' }), 'the worker appears in pg_stat_activity');
is($node->safe_psql('app', "SELECT datname FROM pg_stat_activity WHERE backend_type = 'cobalt worker'"),
	'app', 'serving cobalt.database_name');
my $pid = worker_pid();

# rows the worker cannot send fail alone; the others go on
$node->safe_psql('app', q{
	INSERT INTO cobalt.jobs (operation, account, payload, next_due_at)
	VALUES ('no.such_operation', 'clinic-a', '{"mrn":"1"}', now()),
	       ('appointment.update', 'clinic-a', '{"status":"x"}', now()),
	       ('appointment.create', 'no-such-account', '{"mrn":"1"}', now())});
my ($bad_op, $bad_payload, $bad_account) = split /\n/,
  $node->safe_psql('app', 'SELECT id FROM cobalt.jobs ORDER BY id');
my $good = submit($node, 'appointment.create', { mrn => '1' });
is(wait_for_state($node, $good, 'succeeded'), 'succeeded', 'a good job succeeds beside bad rows');
is(wait_for_state($node, $bad_op, 'failed'), 'failed', 'a job with an unknown operation fails');
like(job_row($node, $bad_op)->{error}, qr/operation no longer exists/, 'with a clear error');
is(wait_for_state($node, $bad_payload, 'failed'), 'failed', 'a job missing its path field fails');
like(job_row($node, $bad_payload)->{error}, qr/needs field "id"/, 'with a clear error');
is($node->safe_psql('app', "SELECT state FROM cobalt.jobs WHERE id = $bad_account"), 'queued',
	'a job whose account has no token waits (nothing reached Cobalt)');
like(job_row($node, $bad_account)->{last_error}, qr/no access token/, 'and says why');
add_account($node, 'no-such-account', 'at_new');
is(wait_for_state($node, $bad_account, 'succeeded'), 'succeeded', 'once the account exists it is sent');
is(worker_pid(), $pid, 'the worker never restarted');
$node->safe_psql('app', "DELETE FROM cobalt.accounts WHERE account = 'no-such-account'");

# SIGTERM with a request in flight: out within a second or two, and the
# interrupted send becomes unknown at restart, never sent again
my $hung = submit($node, 'appointment.create', { mrn => '1', _mock => { key => 'hung', send => 'hang' } });
is(wait_for_state($node, $hung, 'sending'), 'sending', 'request in flight');
ok(wait_until(sub { posts_for('hung') == 1 }), 'the mock holds the request');
my $t0 = time();
$node->safe_psql('app', "SELECT pg_terminate_backend($pid)");
ok(wait_until(sub { $node->safe_psql('app', "SELECT count(*) FROM pg_stat_activity WHERE pid = $pid") == 0 }, 10),
	'the worker exits on SIGTERM');
my $took = time() - $t0;
ok($took < 2, sprintf('within a second or so, with a request in flight (%.2f s)', $took));
ok(wait_until(sub { worker_pid() ne '' }, 20), 'the worker is restarted');
is(wait_for_state($node, $hung, 'unknown'), 'unknown', 'the interrupted send becomes unknown');
like(job_row($node, $hung)->{error}, qr/may or may not have reached Cobalt/, 'and says so');
sleep 2;
is(posts_for('hung'), 1, 'it is never sent again');
$pid = worker_pid();

# DROP EXTENSION while the worker runs, then CREATE again
$node->safe_psql('app', 'DROP EXTENSION cobalt');
sleep 3;
is(worker_pid(), $pid, 'the worker survives DROP EXTENSION without restarting');
$node->safe_psql('app', 'CREATE EXTENSION cobalt');
set_client($node, 'ci_live_test', 'cs_live_test');
add_account($node, 'clinic-a', 'at_live_a');
my $again = submit($node, 'appointment.create', { mrn => '2' });
is(wait_for_state($node, $again, 'succeeded', 30), 'succeeded', 'and serves again once the extension exists');
is(worker_pid(), $pid, 'still the same worker');
my $log = slurp_file($node->logfile);
unlike($log, qr/cobalt worker.*(terminated by signal|exited with exit code [^1])/, 'no worker crash in the log');

# never on a standby
$node->backup('b1');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($node, 'b1', has_streaming => 1);
$standby->start;
$node->wait_for_catchup($standby);
sleep 2;
is($standby->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'cobalt worker'"),
	'0', 'no worker on a standby');
my $sid = submit($node, 'appointment.create', { mrn => '3' });
is(wait_for_state($node, $sid, 'succeeded'), 'succeeded', 'the primary keeps working');
$standby->stop;

$node->stop;
stop_mock($mock);
done_testing();
