using LbAllocator.Core;
using Microsoft.Extensions.Time.Testing;

namespace LbAllocator.Speaker.Tests;

/// <summary>The periodic refresh on a fake clock: each owned (address, interface) once per interval, spread evenly.</summary>
public sealed class GratuitousRefreshTests : IDisposable
{
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(60);
    private static readonly Ip A = Ip.Parse("192.0.2.10");
    private static readonly Ip B = Ip.Parse("2001:db8::10");
    private static readonly Ip C = Ip.Parse("192.0.2.11");

    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 27, 6, 0, 0, TimeSpan.Zero));
    private readonly RecordingAnswerer _announcer = new();
    private readonly List<(TimeSpan At, Ip Address, string Interface)> _sent = [];
    private readonly DateTimeOffset _start;
    private GratuitousRefresh _refresh;

    public GratuitousRefreshTests()
    {
        _start = _time.GetUtcNow();
        _refresh = new GratuitousRefresh(_announcer, Interval, _time);
    }

    public void Dispose() => _refresh.Dispose();

    [Fact]
    public void Each_pair_is_announced_once_per_interval_one_at_a_time_evenly_spaced()
    {
        _refresh.Track(Owned((A, ["eth0", "eth1"]), (B, ["eth0"])));
        Run(TimeSpan.FromMinutes(3));

        // Three pairs: one every 20 s, in address order, each pair every 60 s.
        Assert.Equal(
            [(20, A, "eth0"), (40, A, "eth1"), (60, B, "eth0"), (80, A, "eth0"), (100, A, "eth1"), (120, B, "eth0"), (140, A, "eth0"), (160, A, "eth1"), (180, B, "eth0")],
            _sent.Select(s => ((int)s.At.TotalSeconds, s.Address, s.Interface)));
    }

    [Fact]
    public void More_pairs_than_seconds_in_the_interval_go_a_few_a_second_each_pair_once_per_interval()
    {
        var owned = Enumerable.Range(0, 150).Select(i => (Ip.Parse($"198.51.100.{i}"), new[] { "eth0" })).ToArray();
        _refresh.Track(Owned(owned));
        Run(TimeSpan.FromSeconds(120));

        // 150 pairs over 60 s: one step a second (one pair a step would be 2.5 steps a second, each a wake-up), taking
        // 2 and 3 pairs in turn; every pair once in each 60 s, in address order, at the same second of each.
        Assert.Equal(Enumerable.Range(1, 120).Select(s => (s, s % 2 == 1 ? 2 : 3)), _sent.GroupBy(s => (int)s.At.TotalSeconds).Select(g => (g.Key, g.Count())));
        Assert.Equal([.. owned.Select(o => o.Item1), .. owned.Select(o => o.Item1)], _sent.Select(s => s.Address));
        Assert.All(owned, o => Assert.Equal(60, _sent.Where(s => s.Address == o.Item1).Select(s => (int)s.At.TotalSeconds).Aggregate((a, b) => b - a)));
    }

    [Fact]
    public void A_pair_taken_over_joins_the_round_and_one_given_up_leaves_it()
    {
        _refresh.Track(Owned((A, ["eth0"])));
        Run(TimeSpan.FromSeconds(130)); // A at 60 and 120
        _refresh.Track(Owned((A, ["eth0"]), (C, ["eth0"])));
        Run(TimeSpan.FromSeconds(110)); // the step after A's (due at 180) halves: C at 180, A at 210, C at 240
        _refresh.Track(Owned((C, ["eth0"])));
        Run(TimeSpan.FromSeconds(120)); // A given up: C alone, every 60 s again, after the step already under way

        Assert.Equal(
            [(60, A), (120, A), (180, C), (210, A), (240, C), (270, C), (330, C)],
            _sent.Select(s => ((int)s.At.TotalSeconds, s.Address)));
    }

    [Fact]
    public void Nothing_owned_sends_nothing_until_something_is()
    {
        Run(TimeSpan.FromMinutes(5));
        Assert.Empty(_sent);

        _refresh.Track(Owned((A, ["eth0"])));
        Run(TimeSpan.FromSeconds(61));
        Assert.Equal([(360, A)], _sent.Select(s => ((int)s.At.TotalSeconds, s.Address)));

        _refresh.Track(Owned());
        Run(TimeSpan.FromMinutes(5));
        Assert.Single(_sent);
    }

    [Fact]
    public void Zero_turns_it_off()
    {
        _refresh.Dispose();
        _refresh = new GratuitousRefresh(_announcer, TimeSpan.Zero, _time);
        _refresh.Track(Owned((A, ["eth0"]), (B, ["eth0"])));
        Run(TimeSpan.FromHours(1));
        Assert.Empty(_sent);
    }

    [Fact]
    public void Nothing_is_sent_after_dispose()
    {
        _refresh.Track(Owned((A, ["eth0"])));
        Run(TimeSpan.FromSeconds(61));
        _refresh.Dispose();
        Run(TimeSpan.FromMinutes(5));
        Assert.Single(_sent);
    }

    private static Dictionary<Ip, string[]> Owned(params (Ip Address, string[] Interfaces)[] owned) =>
        owned.ToDictionary(o => o.Address, o => o.Interfaces);

    /// <summary>Advances the clock a second at a time, noting when each round was asked for.</summary>
    private void Run(TimeSpan duration)
    {
        for (var i = 0; i < duration.TotalSeconds; i++)
        {
            _time.Advance(TimeSpan.FromSeconds(1));
            lock (_announcer.Gratuitous)
            {
                foreach (var (address, name) in _announcer.Gratuitous.Skip(_sent.Count))
                {
                    _sent.Add((_time.GetUtcNow() - _start, address, name));
                }
            }
        }
    }
}
