using k8s;
using LbAllocator.Core;
using LbAllocator.TestApiServer;

namespace LbAllocator.Controller.Tests;

/// <summary>Events are told once per trouble, and told again when they could not be written or the object is new.</summary>
[Collection(RealClusterCollection.Name)]
public sealed class EventTests(RealCluster cluster) : IAsyncLifetime
{
    private ControllerFixture _f = null!;

    public async Task InitializeAsync()
    {
        _f = await ControllerFixture.StartAsync(cluster);
        await _f.CreatePoolAsync("main", "192.0.2.0/28");
        await _f.StartControllerAsync();
    }

    public async Task DisposeAsync() => await _f.DisposeAsync();

    [RealApiFact]
    public async Task A_service_deleted_while_failing_and_created_again_is_told_its_trouble_again()
    {
        var annotations = new Dictionary<string, string> { [ServiceAnnotations.AddressPool] = "missing" };
        await _f.CreateServiceAsync("again", annotations);
        await ControllerFixture.Eventually(async () => await FailedEventsAsync() == 1, "one AllocationFailed event");

        await _f.Client.CoreV1.DeleteNamespacedServiceAsync("again", _f.ServiceNs);
        await _f.CreateServiceAsync("again", annotations);
        await ControllerFixture.Eventually(async () => await FailedEventsAsync() == 2, "the new Service has its own AllocationFailed event");
    }

    private async Task<int> FailedEventsAsync() => (await _f.EventsAsync("again")).Count(e => e.Reason == "AllocationFailed");
}

/// <summary>What the real server cannot do on demand: refuse event writes while serving everything else.</summary>
public sealed class EventFaultTests : IAsyncLifetime
{
    private ControllerFixture _f = null!;

    public async Task InitializeAsync()
    {
        _f = await ControllerFixture.StartDoubleAsync();
        await _f.CreatePoolAsync("main", "192.0.2.0/24");
        await _f.StartControllerAsync();
    }

    public async Task DisposeAsync() => await _f.DisposeAsync();

    [Fact]
    public async Task An_event_that_could_not_be_written_is_told_on_a_later_pass()
    {
        _f.Faults.FailWritesFor(TimeSpan.FromMinutes(1), "/events");
        await _f.CreatePoolAsync("overlapping", "192.0.2.0/28");
        await ControllerFixture.Eventually(async () => (await _f.PoolAsync("overlapping")).Status?.Conditions?.Any(c => c.Type == "Valid" && c.Status == "False") == true,
            "the overlapping pool is marked invalid");
        // Every attempt at the InvalidPool event refused (three, with backoff), then the API takes events again.
        await ControllerFixture.Eventually(() => Task.FromResult(_f.Faults.CountRequests("POST", "/events") >= 3), "three event writes were tried");
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.Empty(await _f.EventsAsync("overlapping", _f.Ns));
        _f.Faults.FailWritesFor(TimeSpan.Zero, "/events");

        // The pool's next pass (a new Service changes the pools' usage) tells it.
        await _f.CreateServiceAsync("trigger");
        await ControllerFixture.Eventually(async () => (await _f.EventsAsync("overlapping", _f.Ns)).Any(e => e.Reason == "InvalidPool"), "the InvalidPool event was written after all");
    }
}
