# CobaltTest: shared helpers for cobalt's TAP tests.
#
# Starts the mock Cobalt server (test/mock_cobalt.py) on a free loopback
# port, and PostgreSQL clusters with the cobalt worker pointed at it.  Every
# wait is bounded.
package CobaltTest;

use strict;
use warnings;
use feature 'state';

use Exporter 'import';
use File::Temp qw(tempdir);
use FindBin;
use HTTP::Tiny;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

our @EXPORT = qw(start_mock stop_mock mock_requests mock_post mock_config post_counts
  mock_reset cobalt_node submit wait_for_state wait_until job_row
  api_requests sql_quote set_client add_account set_webhook_secret
  secrets_used secrets_registry);

my $json = JSON::PP->new->canonical(1);
my $ua = HTTP::Tiny->new(timeout => 10);
my %mock_pids;    # mocks still running, stopped at exit whatever happens

END
{
	kill 'TERM', keys %mock_pids;
}

# Start the mock (on a given port, or a free one; over HTTPS with
# tls_cert and tls_key); returns a hash with port, url (the API base URL)
# and pid.
sub start_mock
{
	my (%opt) = @_;
	my $scheme = $opt{tls_cert} ? 'https' : 'http';
	my @tls = $opt{tls_cert} ? ('--tls-cert', $opt{tls_cert}, '--tls-key', $opt{tls_key}) : ();
	my $dir = tempdir(CLEANUP => 1);
	my $portfile = "$dir/port";
	my $script = "$FindBin::RealBin/../test/mock_cobalt.py";
	my $pid = fork();
	die "fork failed: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDOUT, '>', "$dir/mock.log");
		open(STDERR, '>&', \*STDOUT);
		exec('/usr/bin/python3', $script, '--port', $opt{port} // 0, '--port-file', $portfile, @tls)
		  or die "exec failed: $!";
	}
	my $deadline = time() + 15;
	while (!-s $portfile && time() < $deadline)
	{
		usleep(50_000);
	}
	$mock_pids{$pid} = 1;
	die "mock Cobalt server did not start" unless -s $portfile;
	my $port = PostgreSQL::Test::Utils::slurp_file($portfile);
	chomp $port;
	return {
		pid => $pid,
		port => $port,
		base => "$scheme://127.0.0.1:$port",
		url => "$scheme://127.0.0.1:$port/v1",
		log => "$dir/mock.log",
		ca => $opt{ca},
		insecure => $opt{insecure},    # the control client skips verification
	};
}

sub stop_mock
{
	my ($mock) = @_;
	return unless $mock->{pid};
	kill 'TERM', $mock->{pid};
	waitpid($mock->{pid}, 0);
	delete $mock_pids{ $mock->{pid} };
	$mock->{pid} = 0;
}

# Every request the mock received (optionally those after sequence $since).
sub mock_requests
{
	my ($mock, $since) = @_;
	my $url = "$mock->{base}/_mock/requests";
	$url .= "?since=$since" if defined $since;
	my $res = mock_ua($mock)->get($url);
	die "mock request list failed: $res->{status} $res->{content}"
	  unless $res->{success};
	return $json->decode($res->{content});
}

# How many job-creating requests (not polls) the mock received per _mock key.
sub post_counts
{
	my ($mock) = @_;
	my %n;
	for my $r (@{ mock_requests($mock) })
	{
		next if $r->{method} eq 'GET' || ref $r->{json} ne 'HASH' || ref $r->{json}{_mock} ne 'HASH';
		$n{ $r->{json}{_mock}{key} // '' }++;
	}
	return \%n;
}

# The API requests (not control ones) matching method and path prefix.
sub api_requests
{
	my ($mock, $method, $path_prefix) = @_;
	return [
		grep {
			(!defined $method || $_->{method} eq $method)
			  && (!defined $path_prefix
				|| substr($_->{path}, 0, length $path_prefix) eq $path_prefix)
		} @{ mock_requests($mock) }
	];
}

sub mock_post
{
	my ($mock, $path, $body) = @_;
	my $res = mock_ua($mock)->post("$mock->{base}$path",
		{ content => $json->encode($body // {}), headers => { 'content-type' => 'application/json' } });
	die "mock $path failed: $res->{status} $res->{content}" unless $res->{success};
	return $res->{content};
}

# An HTTP client for the mock's control endpoints (trusting its CA).
sub mock_ua
{
	my ($mock) = @_;
	return HTTP::Tiny->new(timeout => 10, verify_SSL => 0) if $mock->{insecure};
	return $ua unless $mock->{ca};
	return HTTP::Tiny->new(timeout => 10, verify_SSL => 1, SSL_options => { SSL_ca_file => $mock->{ca} });
}

sub mock_config { my ($mock, $cfg) = @_; mock_post($mock, '/_mock/config', $cfg); }
sub mock_reset { my ($mock) = @_; mock_post($mock, '/_mock/reset', {}); }

# A started cluster whose worker serves database "app" against the mock,
# with the extension created and credentials and one account set.
# Options: conf (extra postgresql.conf text), no_setup, accounts.
sub cobalt_node
{
	my ($name, $mock, %opt) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%{ $opt{init} // {} });
	# debug5 everywhere: t/099_secrets.pl greps every log for every secret
	my $conf = "shared_preload_libraries = 'cobalt'\n"
	  . "cobalt.database_name = 'app'\n"
	  . "cobalt.api_url = '$mock->{url}'\n"
	  . "cobalt.poll_interval = '200ms'\n"
	  . "log_min_messages = debug5\n";
	$conf .= $opt{conf} if $opt{conf};
	$node->append_conf('postgresql.conf', $conf);
	$node->start;
	return $node if $opt{no_db};
	$node->safe_psql('postgres', 'CREATE DATABASE app');
	return $node if $opt{no_setup};
	$node->safe_psql('app', 'CREATE EXTENSION cobalt');
	set_client($node, 'ci_live_test', 'cs_live_test');
	add_account($node, 'clinic-a', 'at_live_a');
	return $node;
}

# Every secret the tests hand to cobalt is listed in this file, one per
# line, for t/099_secrets.pl to look for in every server log.
sub secrets_registry
{
	return "$PostgreSQL::Test::Utils::tmp_check/cobalt_secrets_used";
}

sub secrets_used
{
	my $file = secrets_registry();
	return () unless -f $file;
	my %seen = map { chomp; ($_ => 1) } grep { /\S/ } split /\n/, PostgreSQL::Test::Utils::slurp_file($file);
	return sort keys %seen;
}

# Hand a secret to cobalt the way the README recommends: from a file in
# the data directory, so no statement text holds it.  Calls
# $function(@args_before, 'file') in database $db.
sub secret_from_file
{
	my ($node, $db, $secret, $function, @before) = @_;
	state $n = 0;
	my $name = sprintf('cobalt_test_secret_%d_%d', $$, ++$n);
	my $path = $node->data_dir . "/$name";
	PostgreSQL::Test::Utils::append_to_file(secrets_registry(), "$secret\n");
	open(my $fh, '>', $path) or die "cannot write $path: $!";
	print $fh "$secret\n";
	close($fh);
	$node->safe_psql($db, "SELECT $function("
		  . join('', map { sql_quote($_) . ', ' } @before) . sql_quote($name) . ')');
	unlink($path);
}

sub set_client
{
	my ($node, $id, $secret, %opt) = @_;
	secret_from_file($node, $opt{db} // 'app', $secret, 'cobalt_set_client_from_file', $id);
}

sub add_account
{
	my ($node, $account, $token, %opt) = @_;
	secret_from_file($node, $opt{db} // 'app', $token, 'cobalt_add_account_from_file', $account);
}

sub set_webhook_secret
{
	my ($node, $secret, %opt) = @_;
	secret_from_file($node, $opt{db} // 'app', $secret, 'cobalt_set_webhook_secret_from_file');
}

sub sql_quote
{
	my ($s) = @_;
	$s =~ s/'/''/g;
	return "'$s'";
}

# Submit a job; payload is a Perl hash (encoded to JSON) or JSON text.
sub submit
{
	my ($node, $operation, $payload, $account) = @_;
	my $text = ref $payload ? $json->encode($payload) : $payload;
	my $sql = "SELECT cobalt_submit(" . sql_quote($operation) . ", "
	  . sql_quote($text) . "::jsonb"
	  . (defined $account ? ", account => " . sql_quote($account) : "") . ")";
	return $node->safe_psql('app', $sql);
}

# Wait (bounded) until $code returns true; returns whether it did.
sub wait_until
{
	my ($code, $timeout) = @_;
	my $deadline = time() + ($timeout // 30);
	while (time() < $deadline)
	{
		return 1 if $code->();
		usleep(50_000);
	}
	return 0;
}

# Wait until job $id is in $state (or one of an arrayref of states).
sub wait_for_state
{
	my ($node, $id, $states, $timeout) = @_;
	$states = [$states] unless ref $states;
	my %want = map { $_ => 1 } @$states;
	my $state;
	wait_until(
		sub {
			$state = $node->safe_psql('app', "SELECT state FROM cobalt.jobs WHERE id = $id");
			return $want{$state};
		},
		$timeout);
	return $state;
}

# A job's row as a hash.
sub job_row
{
	my ($node, $id) = @_;
	my $row = $node->safe_psql('app',
		"SELECT row_to_json(j) FROM cobalt.jobs j WHERE id = $id");
	return $row eq '' ? undef : $json->decode($row);
}

1;
