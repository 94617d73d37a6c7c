using Xunit;

namespace LbAllocator.TestApiServer;

/// <summary>
/// A test that needs the real kube-apiserver: skipped, with the reason and how to get one, where the binary
/// or etcd is missing, except in CI (CI=true), where a missing binary must fail the run rather than hide it.
/// </summary>
public sealed class RealApiFactAttribute : FactAttribute
{
    public RealApiFactAttribute()
    {
        Skip = RealApi.SkipReason;
    }
}

/// <inheritdoc cref="RealApiFactAttribute"/>
public sealed class RealApiTheoryAttribute : TheoryAttribute
{
    public RealApiTheoryAttribute()
    {
        Skip = RealApi.SkipReason;
    }
}

public static class RealApi
{
    public static string? SkipReason =>
        Environment.GetEnvironmentVariable("CI") == "true" ? null : KubeApiServer.Missing;
}

/// <summary>One real API server shared by the tests of a collection (started once, stopped at the end).</summary>
public sealed class KubeApiServerFixture : IAsyncLifetime
{
    private KubeApiServer? _server;

    public KubeApiServer Server => _server ?? throw new InvalidOperationException(KubeApiServer.Missing ?? "the real API server did not start");

    public async Task InitializeAsync()
    {
        if (RealApi.SkipReason is null)
        {
            _server = await KubeApiServer.StartAsync();
        }
    }

    public async Task DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }
}
