using LbAllocator.Speaker.Lan;

namespace LbAllocator.Speaker.Tests;

/// <summary>The view merges to the same state whatever the order, never revives an ended epoch, and gives each member the same ring neighbours from both sides.</summary>
public class MemberViewTests
{
    private static ViewEntry Alive(string name, ulong epoch) => new(name, epoch, false, new MacAddress((ulong)name.GetHashCode(StringComparison.Ordinal) & 0xFFFF_FFFF));

    private static ViewEntry Over(string name, ulong epoch) => new(name, epoch, true, default);

    [Fact]
    public void Any_order_of_the_same_entries_gives_the_same_members_and_digest()
    {
        ViewEntry[] entries = [Alive("a", 1), Alive("b", 1), Over("a", 1), Alive("a", 2), Alive("c", 5), Over("c", 4), Alive("b", 1)];
        var states = new HashSet<(string, ulong)>();
        var random = new Random(7);
        for (var i = 0; i < 200; i++)
        {
            var view = new MemberView();
            foreach (var entry in entries.OrderBy(_ => random.Next()))
            {
                view.Apply(entry, 0);
            }

            states.Add((string.Join(",", view.Alive.Order()), view.Digest));
        }

        Assert.Equal([("a,b,c", states.Single().Item2)], states);
    }

    [Fact]
    public void An_ended_epoch_stays_ended_and_only_a_newer_one_brings_the_name_back()
    {
        var view = new MemberView();
        Assert.True(view.Apply(Alive("a", 3), 0));
        Assert.True(view.End("a", 3, 0));
        Assert.False(view.Apply(Alive("a", 3), 0)); // a replay of the old epoch
        Assert.False(view.Apply(Alive("a", 2), 0));
        Assert.False(view.IsAlive("a", 3));
        Assert.True(view.Apply(Alive("a", 4), 0));
        Assert.True(view.IsAlive("a", 4));
        Assert.Equal(1, view.AliveCount);
    }

    [Fact]
    public void The_version_moves_only_when_the_alive_members_change()
    {
        var view = new MemberView();
        view.Apply(Alive("a", 1), 0);
        var version = view.Version;
        view.Apply(Alive("a", 1) with { Mac = new MacAddress(9) }, 0);
        view.Apply(Over("a", 0), 0);
        Assert.Equal(version, view.Version);
        Assert.Equal("a", view.NameOf(new MacAddress(9)));
    }

    [Fact]
    public void Tombstones_are_forgotten_after_their_time_and_the_view_refuses_entries_past_its_capacity()
    {
        var view = new MemberView(capacity: 2);
        view.Apply(Alive("a", 1), 0);
        view.End("a", 1, 100);
        view.Apply(Alive("b", 1), 0);
        Assert.False(view.Apply(Alive("c", 1), 0));
        view.Forget(before: 101);
        Assert.False(view.TryGet("a", out _));
        Assert.True(view.Apply(Alive("c", 1), 0));
    }

    [Theory]
    [InlineData(3, 4)]
    [InlineData(5, 4)]
    [InlineData(50, 4)]
    [InlineData(50, 2)]
    [InlineData(1000, 4)]
    public void Ring_neighbours_are_symmetric_and_as_many_as_asked(int members, int count)
    {
        var view = new MemberView();
        for (var i = 0; i < members; i++)
        {
            view.Apply(Alive($"node-{i}", 1), 0);
        }

        foreach (var name in view.Alive)
        {
            var neighbors = view.Neighbors(name, count);
            Assert.Equal(Math.Min(count, members - 1), neighbors.Count);
            Assert.DoesNotContain(name, neighbors);
            Assert.All(neighbors, n => Assert.Contains(name, view.Neighbors(n, count)));
        }
    }

    [Fact]
    public void A_joiner_is_answered_by_exactly_the_members_that_will_be_its_neighbours()
    {
        var view = new MemberView();
        for (var i = 0; i < 20; i++)
        {
            view.Apply(Alive($"node-{i}", 1), 0);
        }

        var asked = view.NeighborsIfJoined("joiner", 4);
        Assert.Equal(4, asked.Count);
        view.Apply(Alive("joiner", 1), 0);
        Assert.Equal(asked.Order(), view.Neighbors("joiner", 4).Order());
    }

    [Fact]
    public void The_ring_depends_only_on_who_is_alive_whatever_came_and_went_before()
    {
        var random = new Random(26);
        var churned = new MemberView();
        var epochs = new Dictionary<string, ulong>();
        for (var step = 0; step < 3000; step++)
        {
            var name = $"node-{random.Next(40)}";
            var epoch = epochs.GetValueOrDefault(name);
            if (churned.IsAlive(name, epoch) && random.Next(2) == 0)
            {
                churned.End(name, epoch, 0);
            }
            else
            {
                epochs[name] = epoch + 1; // a new epoch ends the old one if it was alive
                churned.Apply(Alive(name, epoch + 1), 0);
            }

            if (step % 50 != 0)
            {
                continue;
            }

            var fresh = new MemberView();
            foreach (var alive in churned.Alive.OrderBy(_ => random.Next()))
            {
                fresh.Apply(Alive(alive, epochs[alive]), 0);
            }

            foreach (var member in epochs.Keys.Append("joiner"))
            {
                Assert.Equal(fresh.Neighbors(member, 4), churned.Neighbors(member, 4));
                Assert.Equal(fresh.NeighborsIfJoined(member, 4), churned.NeighborsIfJoined(member, 4));
            }
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(9)]
    public void A_joiner_of_a_small_segment_is_answered_by_exactly_its_future_neighbours(int members)
    {
        for (var joiner = 0; joiner < 20; joiner++)
        {
            var view = new MemberView();
            for (var i = 0; i < members; i++)
            {
                view.Apply(Alive($"node-{i}", 1), 0);
            }

            var asked = view.NeighborsIfJoined($"joiner-{joiner}", 4);
            Assert.Equal(Math.Min(4, members), asked.Count);
            view.Apply(Alive($"joiner-{joiner}", 1), 0);
            Assert.Equal(asked.Order(), view.Neighbors($"joiner-{joiner}", 4).Order());
        }
    }
}
