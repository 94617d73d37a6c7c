using LbAllocator.Speaker.Lan;
using Xunit.Abstractions;

namespace LbAllocator.Speaker.Tests;

/// <summary>
/// The membership on a simulated segment (<see cref="LanSim"/>): whatever fails, no Service is ever answered by two
/// nodes; a dead owner is replaced within a second; an owner coming back takes its Services back after a short pause.
/// </summary>
public class MembershipTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Second = TimeSpan.FromSeconds(1);

    [Fact]
    public void Three_speakers_join_each_other_and_every_service_is_answered_by_exactly_its_winner()
    {
        var sim = Three();

        Assert.All(sim.Nodes.Values, n => Assert.Equal(MemberState.Member, n.Membership.View().State));
        Assert.All(sim.Services, s => Assert.Equal([LanSim.Winner(s, sim.Nodes.Keys)!], sim.Answering(s)));
        NoDoubles(sim);
    }

    [Fact]
    public void A_crashed_owner_is_replaced_within_a_second_and_nothing_is_answered_twice()
    {
        var sim = Three();
        var (service, owner) = Owned(sim, "node1");

        var at = sim.Now;
        sim.Nodes[owner].Crash();
        var failover = Until(sim, () => sim.Answering(service).Length == 1, 2 * Second);

        output.WriteLine($"failover {failover.TotalMilliseconds} ms");
        Assert.True(failover <= TimeSpan.FromMilliseconds(800), $"failover took {failover}");
        NoDoubles(sim);
        Assert.All(sim.Services, s => Assert.Single(sim.Answering(s)));
        Assert.DoesNotContain(owner, sim.Nodes["node2"].Membership.View().Alive);
    }

    [Fact]
    public void A_terminated_owner_hands_over_at_once()
    {
        var sim = Three();
        var (service, owner) = Owned(sim, "node1");

        sim.Nodes[owner].Terminate();
        var failover = Until(sim, () => sim.Answering(service).Length == 1, Second);

        Assert.True(failover <= TimeSpan.FromMilliseconds(50), $"handover took {failover}");
        NoDoubles(sim);
    }

    [Fact]
    public void A_killed_owner_that_comes_back_takes_its_services_back_after_a_short_pause_and_never_beside_the_other()
    {
        var sim = Three();
        var (service, owner) = Owned(sim, "node1");
        sim.Nodes[owner].Crash();
        sim.Run(2 * Second);

        var back = sim.Now;
        sim.Nodes[owner].Restart();
        Until(sim, () => sim.Answering(service) is [var by] && by == owner, 3 * Second);
        sim.Run(Second);

        var pause = sim.LongestSilence(service, back);
        output.WriteLine($"longest silence at the handback {pause.TotalMilliseconds} ms");
        Assert.True(pause <= TimeSpan.FromMilliseconds(300), $"silent for {pause}");
        NoDoubles(sim);
    }

    [Fact]
    public void A_frozen_owner_stops_answering_by_itself_before_it_is_replaced_and_rejoins_after_it_thaws()
    {
        var sim = Three();
        var (service, owner) = Owned(sim, "node1");

        sim.Nodes[owner].Frozen = true;
        Until(sim, () => sim.Answering(service).Length == 1, 2 * Second);
        sim.Run(2 * Second);
        sim.Nodes[owner].Thaw();
        sim.Run(3 * Second);

        NoDoubles(sim);
        Assert.Equal([owner], sim.Answering(service));
        Assert.True(sim.Settled());
    }

    [Fact]
    public void A_node_deaf_to_the_speakers_takes_nothing_moves_nothing_of_the_others_and_hands_its_own_on()
    {
        var sim = Three();
        var deaf = "node2";
        var others = sim.Services.Where(s => LanSim.Winner(s, sim.Nodes.Keys) != deaf).ToList();
        var own = sim.Services.Where(s => LanSim.Winner(s, sim.Nodes.Keys) == deaf).ToList();
        Assert.NotEmpty(own);

        var start = sim.Now;
        sim.Nodes[deaf].Deaf = true;
        sim.Run(20 * Second);

        NoDoubles(sim);
        Assert.All(others, s => Assert.Equal([LanSim.Winner(s, sim.Nodes.Keys)!], sim.Answering(s)));
        Assert.All(others, s => Assert.Equal(TimeSpan.Zero, sim.LongestSilence(s, start)));
        Assert.All(own, s => Assert.Single(sim.Answering(s)));
        Assert.DoesNotContain(deaf, own.SelectMany(sim.Answering));

        sim.Nodes[deaf].Deaf = false;
        sim.Settle(5 * Second);
        sim.Run(Second);
        Assert.All(own, s => Assert.Equal([deaf], sim.Answering(s)));
        NoDoubles(sim);
    }

    [Fact]
    public void An_owner_whose_link_goes_down_is_replaced_within_a_second_and_takes_over_again_when_it_comes_back()
    {
        var sim = Three();
        var (service, owner) = Owned(sim, "node1");

        sim.Nodes[owner].Down = true;
        var failover = Until(sim, () => sim.Answering(service).Length == 1, 2 * Second);
        sim.Run(2 * Second);
        var up = sim.Now;
        sim.Nodes[owner].Down = false;
        Until(sim, () => sim.Answering(service) is [var by] && by == owner, 15 * Second);
        sim.Run(Second);

        output.WriteLine($"failover {failover.TotalMilliseconds} ms, longest silence after the link came up {sim.LongestSilence(service, up).TotalMilliseconds} ms");
        Assert.True(failover <= TimeSpan.FromMilliseconds(800), $"failover took {failover}");
        Assert.True(sim.LongestSilence(service, up) <= TimeSpan.FromMilliseconds(300));
        NoDoubles(sim);
    }

    [Fact]
    public void One_neighbour_that_cannot_hear_another_changes_nothing()
    {
        var sim = Three();
        var before = sim.Services.ToDictionary(s => s, s => sim.Answering(s).Single());

        var start = sim.Now;
        sim.Dropped = (from, to) => from == "node1" && to == "node2";
        sim.Run(10 * Second);

        NoDoubles(sim);
        Assert.All(sim.Services, s => Assert.Equal([before[s]], sim.Answering(s)));
        Assert.All(sim.Services, s => Assert.Equal(TimeSpan.Zero, sim.LongestSilence(s, start)));
    }

    [Fact]
    public void A_mute_owner_stops_answering_before_the_others_take_over()
    {
        var sim = Three();
        var (service, owner) = Owned(sim, "node3");

        sim.Nodes[owner].Mute = true;
        var failover = Until(sim, () => sim.Answering(service) is [var by] && by != owner, 2 * Second);
        sim.Run(3 * Second);

        Assert.True(failover <= TimeSpan.FromMilliseconds(800), $"failover took {failover}");
        NoDoubles(sim);
    }

    [Fact]
    public void Two_of_three_crashing_at_once_leave_the_survivor_silent_until_the_api_says_they_are_gone()
    {
        var sim = Three();
        sim.Nodes["node1"].Crash();
        sim.Nodes["node2"].Crash();

        // The survivor cannot tell the others' death from its own deafness: it asks the API, which shows their leases
        // renewed until their lease duration has passed.
        sim.Run(LanSim.LeaseDuration - Second);
        Assert.All(sim.Services, s => Assert.Empty(sim.Answering(s)));
        sim.Run(7 * Second);
        NoDoubles(sim);
        Assert.All(sim.Services, s => Assert.Equal(["node3"], sim.Answering(s)));
    }

    [Fact]
    public void Speakers_with_different_timings_side_by_side_never_answer_twice()
    {
        var sim = new LanSim();
        sim.Add("fast", TimeSpan.FromMilliseconds(50), TimeSpan.FromMilliseconds(200));
        sim.Add("slow", TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(3));
        sim.Add("default");
        sim.Settle();
        sim.Run(5 * Second);
        NoDoubles(sim);

        sim.Nodes["slow"].Crash();
        sim.Run(5 * Second);
        sim.Nodes["slow"].Restart();
        sim.Settle();
        sim.Run(2 * Second);

        NoDoubles(sim);
        Assert.All(sim.Services, s => Assert.Single(sim.Answering(s)));
    }

    [Fact]
    public void Of_two_speakers_the_survivor_answers_alone_once_the_api_shows_the_other_gone_and_at_once_after_a_SIGTERM()
    {
        // One speaker with a single neighbour cannot tell its death from its own deafness: the API decides.
        var sim = new LanSim();
        sim.Add("a");
        sim.Add("b");
        sim.Settle();
        sim.Run(Second);
        sim.Nodes["a"].Crash();
        var failover = Until(sim, () => sim.Services.All(s => sim.Answering(s) is ["b"]), LanSim.LeaseDuration + 7 * Second);
        Assert.True(failover > LanSim.LeaseDuration, $"failover took {failover}");
        NoDoubles(sim);

        sim.Nodes["a"].Restart();
        sim.Settle();
        sim.Run(Second);
        sim.Nodes["b"].Terminate();
        Until(sim, () => sim.Services.All(s => sim.Answering(s) is ["a"]), Second);
        NoDoubles(sim);
    }

    [Fact]
    public void Of_two_speakers_one_that_cannot_hear_the_other_leaves_both_silent_until_it_hears_again()
    {
        // Neither can tell its own failure (deaf, or mute) from the other's, and both still renew their leases: safety
        // first, nobody answers; the README says so of two-speaker segments.
        var sim = new LanSim();
        sim.Add("a");
        sim.Add("b");
        sim.Settle();
        sim.Run(Second);
        sim.Nodes["a"].Deaf = true;
        sim.Run(10 * Second);
        NoDoubles(sim);
        Assert.All(sim.Services, s => Assert.Empty(sim.Answering(s)));

        sim.Nodes["a"].Deaf = false;
        sim.Settle(10 * Second);
        sim.Run(Second);
        NoDoubles(sim);
        Assert.All(sim.Services, s => Assert.Single(sim.Answering(s)));
    }

    public static TheoryData<int> Seeds() => [.. Enumerable.Range(1, 60)];

    [Theory]
    [MemberData(nameof(Seeds))]
    public void Random_crashes_freezes_restarts_and_deafness_among_seven_never_answer_twice(int seed)
    {
        var random = new Random(seed);
        var sim = new LanSim(services: 40);
        for (var i = 1; i <= 7; i++)
        {
            sim.Add($"node{i}");
        }

        sim.Settle();
        for (var round = 0; round < 30; round++)
        {
            var node = sim.Nodes[$"node{random.Next(1, 8)}"];
            var fault = random.Next(9);
            sim.Log.Add($"{sim.Now.TotalMilliseconds} FAULT {node.Name} {fault}");
            switch (fault)
            {
                case 0 when !node.Crashed:
                    node.Crash();
                    break;
                case 1 when node.Crashed:
                    node.Restart();
                    break;
                case 2 when node.Running:
                    node.Frozen = true;
                    break;
                case 3 when node.Frozen:
                    node.Thaw();
                    break;
                case 4:
                    node.Deaf = !node.Deaf;
                    break;
                case 5:
                    node.Down = !node.Down;
                    break;
                case 6:
                    node.Mute = !node.Mute;
                    break;
                case 7 when !node.Crashed:
                    node.Terminate();
                    break;
                case 8:
                    var (a, b) = ($"node{random.Next(1, 8)}", $"node{random.Next(1, 8)}");
                    var drop = random.Next(2) == 1;
                    sim.Dropped = drop ? (from, to) => from == a && to == b : (_, _) => false;
                    sim.Log.Add($"{sim.Now.TotalMilliseconds} LINK {(drop ? $"{a}->{b} dropped" : "all links up")}");
                    break;
            }

            sim.Run(TimeSpan.FromMilliseconds(random.Next(100, 2000)));
        }

        output.WriteLine($"{sim.Frames} frames; silences over 1 s: {sim.Silences.Count(s => s.Length > Second)}");
        File.WriteAllLines($"/tmp/sim-{seed}.log", sim.Log);
        NoDoubles(sim);
    }

    private static void NoDoubles(LanSim sim) =>
        Assert.True(sim.Doubles.Count == 0, $"answered twice: {string.Join("; ", sim.Doubles.Take(5).Select(d => $"{d.Service} at {d.At.TotalMilliseconds} ms by {string.Join("+", d.By)}"))}\n{sim.Describe()}");

    /// <summary>Three speakers, joined and answering.</summary>
    private static LanSim Three()
    {
        var sim = new LanSim();
        foreach (var name in new[] { "node1", "node2", "node3" })
        {
            sim.Add(name);
        }

        sim.Settle();
        sim.Run(Second);
        return sim;
    }

    private static (string Service, string Owner) Owned(LanSim sim, string owner) =>
        (sim.Services.First(s => LanSim.Winner(s, sim.Nodes.Keys) == owner), owner);

    private static TimeSpan Until(LanSim sim, Func<bool> done, TimeSpan within)
    {
        var start = sim.Now;
        while (!done())
        {
            Assert.True(sim.Now - start < within, $"not done within {within}");
            sim.Run(LanSim.Step);
        }

        return sim.Now - start;
    }
}
